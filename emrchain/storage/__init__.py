"""Ciphertext and key storage: interfaces, embedded defaults, IPFS / Redis / HSM backends."""
