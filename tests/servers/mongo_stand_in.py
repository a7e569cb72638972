"""A MongoDB stand-in server for the MongoDB tests (tests/tests/mongodb.rs):
no MongoDB server is installable from the package registries the tests can
reach (Debian has none; PoloDB, from crates.io, writes OP_MSG replies that
drivers refuse). The wire protocol is MockupDB's (MongoDB Inc.'s server
library for testing drivers, from PyPI); the data and the commands'
semantics are mongomock's (from PyPI). What the agent decodes is what
pymongo writes and what MockupDB encodes, never bytes the tests wrote.

    mongo_stand_in.py PORT [--tls]

With --tls it speaks TLS only (MockupDB's own self-signed certificate).

Run with /usr/bin/python3, PYTHONPATH holding mockupdb and mongomock
(scripts/install-deps.sh test installs them). Prints "listening" once its
socket is bound. Answers `hello`/`isMaster` as a standalone server of wire
version 8 (MongoDB 4.2), `insert`, `find`, `getMore`, `update`, `delete`,
`aggregate`, `count`, `ping` and `endSessions`; any other command fails as
MongoDB fails an unknown one (code 59, CommandNotFound). Duplicate `_id`s
are write errors (code 11000, DuplicateKey), as MongoDB reports them.
"""
import datetime
import os
import ssl
import sys
import threading

import mockupdb
import mongomock
from bson.int64 import Int64
from mockupdb import OP_MSG_FLAGS, Matcher, MockupDB

STORE = mongomock.MongoClient()
# find's first batch: at most this many documents, the rest by getMore.
BATCH = 101
CURSORS = {}


def hello(request):
    return request.ok(
        ismaster=True,
        isWritablePrimary=True,
        maxWireVersion=8,
        minWireVersion=0,
        maxBsonObjectSize=16 * 1024 * 1024,
        maxMessageSizeBytes=48000000,
        maxWriteBatchSize=100000,
        localTime=datetime.datetime.now(datetime.timezone.utc),
        connectionId=1,
        readOnly=False,
    )


def cursor_reply(request, namespace, documents, first):
    """A cursor's first or next batch, keeping the rest for getMore."""
    batch, rest = documents[:BATCH], documents[BATCH:]
    cursor_id = 0
    if rest:
        cursor_id = len(CURSORS) + 1
        CURSORS[cursor_id] = (namespace, rest)
    key = "firstBatch" if first else "nextBatch"
    # A cursor id is a 64-bit integer, as MongoDB sends it (drivers check the type).
    return request.ok(cursor={"id": Int64(cursor_id), "ns": namespace, key: batch})


class Unanswered:
    """A request flagged moreToCome (an unacknowledged write) gets no reply:
    its handler runs against this instead of the request."""

    def ok(self, **_fields):
        return True

    command_err = ok


def insert(request, db, doc):
    collection = db[doc["insert"]]
    written, errors = 0, []
    for index, document in enumerate(doc.get("documents", [])):
        try:
            collection.insert_one(document)
            written += 1
        except mongomock.DuplicateKeyError as e:
            errors.append({"index": index, "code": 11000, "codeName": "DuplicateKey",
                           "errmsg": "E11000 duplicate key error: " + str(e)})
            if doc.get("ordered", True):
                break
    fields = {"n": written}
    if errors:
        fields["writeErrors"] = errors
    return request.ok(**fields)


def update(request, db, doc):
    collection = db[doc["update"]]
    matched = modified = 0
    for statement in doc.get("updates", []):
        change = collection.update_many if statement.get("multi") else collection.update_one
        result = change(statement["q"], statement["u"], upsert=statement.get("upsert", False))
        matched += result.matched_count
        modified += result.modified_count
    return request.ok(n=matched, nModified=modified)


def delete(request, db, doc):
    collection = db[doc["delete"]]
    removed = 0
    for statement in doc.get("deletes", []):
        remove = collection.delete_one if statement.get("limit") == 1 else collection.delete_many
        removed += remove(statement["q"]).deleted_count
    return request.ok(n=removed)


def handle(request):
    if getattr(request, "flags", 0) & OP_MSG_FLAGS["moreToCome"]:
        handle_as(Unanswered(), request)
        return True
    return handle_as(request, request)


def handle_as(request, received):
    """Runs `received`'s command; replies through `request`."""
    name = received.command_name
    doc = received.doc
    db = STORE[received.namespace.split(".")[0]]
    if name in ("hello", "isMaster", "ismaster"):
        return hello(request)
    if name in ("ping", "endSessions"):
        return request.ok()
    if name == "insert":
        return insert(request, db, doc)
    if name == "update":
        return update(request, db, doc)
    if name == "delete":
        return delete(request, db, doc)
    if name == "find":
        found = list(db[doc["find"]].find(doc.get("filter", {}), limit=doc.get("limit", 0)))
        return cursor_reply(request, f"{db.name}.{doc['find']}", found, True)
    if name == "getMore":
        namespace, rest = CURSORS.pop(doc["getMore"], ("", []))
        return cursor_reply(request, namespace, rest, False)
    if name == "aggregate":
        found = list(db[doc["aggregate"]].aggregate(doc.get("pipeline", [])))
        return cursor_reply(request, f"{db.name}.{doc['aggregate']}", found, True)
    if name == "count":
        return request.ok(n=db[doc["count"]].count_documents(doc.get("query", {})))
    return request.command_err(
        code=59, errmsg=f"no such command: '{name}'", codeName="CommandNotFound"
    )


def serve_tls(server):
    """TLS on each accepted connection, with MockupDB's own certificate.
    (MockupDB's `ssl=True` handshakes in its accept loop, which a client
    that connects and leaves, such as the tests' check that the port
    listens, ends for good.)"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(os.path.dirname(mockupdb.__file__), "server.pem"))
    serve_plain = server._server_loop

    def serve(client, address):
        try:
            client = context.wrap_socket(client, server_side=True)
        except OSError:
            client.close()
            return
        serve_plain(client, address)

    server._server_loop = serve


def main():
    server = MockupDB(port=int(sys.argv[1]), auto_ismaster=False)
    if "--tls" in sys.argv[2:]:
        serve_tls(server)
    server.autoresponds(Matcher(), handle)
    server.run()
    print("listening", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
