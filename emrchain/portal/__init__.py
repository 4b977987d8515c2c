"""The member portal (`emrchain portal --key FILE`): a local web application, like a wallet.

It runs on the member's own machine, bound to 127.0.0.1, holds the member's key, and does what
the client library does — seal, sign, open — so the browser page only ever talks to this local
process and the node only ever receives what the client sends today (ciphertext, data keys
sealed to public keys, signed transactions and requests). Why that split, and how other
websites in the same browser are kept from driving it: `docs/portal.md`.
"""
