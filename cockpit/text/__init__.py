"""Text in, ids out: the tokenizers (char, byte, tiktoken, SentencePiece) and the embedded
default corpus. Torch-free; the training child, samples and the pre-launch checks use it."""
