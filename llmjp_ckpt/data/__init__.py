"""The data stage: corpus -> tokenised 65-token windows, balanced by language, split 8:1:1."""
