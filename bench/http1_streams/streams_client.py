"""GETs paths on one keep-alive connection and prints, as JSON, each path's
body length as the client read it. Listens on a port too (the first
argument), so that an agent's --open-port instruments it, and waits the
second argument's seconds for the agent to start.
Usage: streams_client.py LISTEN_PORT WAIT SERVER_PORT PATH..."""

import http.client
import json
import socket
import sys
import time

listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
time.sleep(float(sys.argv[2]))
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[3]))
lengths = {}
for path in sys.argv[4:]:
    connection.request("GET", path)
    lengths[path] = len(connection.getresponse().read())
print(json.dumps(lengths))
