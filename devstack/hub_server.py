"""Entry point and stable import path of the Hub test server (the code lives in `devstack.hub`).

python -m devstack.hub_server --root DIR --port P [--token T]... [--page-size N]
"""

from devstack.hub import Fault, Faults, HubServer, HubServerError, RequestLog, RequestRecord, main

__all__ = ["Fault", "Faults", "HubServer", "HubServerError", "RequestLog", "RequestRecord", "main"]

if __name__ == "__main__":
    main()
