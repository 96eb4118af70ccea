import sys

from llmjp_ckpt.cli import main

sys.exit(main())
