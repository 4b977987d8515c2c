"""The contract of the node's HTTP API that both ends hold: signed requests (`signing.py`, one
digest for client and server) and the strict parsing of the API's text (`parse.py`). The
server (`emrchain/rpc/`) and the client library (`emrchain/client/`) import this package;
neither imports the other."""
