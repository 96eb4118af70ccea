"""The Hugging Face Hub: uploads of finished SAEs in SAELens format."""
