"""An HTTP service that calls MongoDB while serving its requests, for the
MongoDB end-to-end tests (tests/tests/mongodb.rs). Run with /usr/bin/python3
(Debian's python3-pymongo, 3.11).

    mongo_app.py PORT

The server is at 127.0.0.1:ZT_MONGO_PORT (tests/src/mongo_stand_in.rs starts
a MongoDB stand-in there), over TLS when ZT_MONGO_TLS is set (its certificate
is not checked). Prints "listening" once its
socket is bound.

One GET path per scenario (scenario_server.py), each on a fresh client (so
the agent sees its connections from their first byte).
"""
import os

from scenario_server import HOST, serve


def client():
    import pymongo

    tls = {"tls": True, "tlsAllowInvalidCertificates": True} if os.environ.get("ZT_MONGO_TLS") else {}
    return pymongo.MongoClient(
        HOST,
        int(os.environ["ZT_MONGO_PORT"]),
        serverSelectionTimeoutMS=5000,
        appname="zt-mongo-app",
        **tls,
    )


def crud():
    """Writes and reads of `shop.users`: 4 inserted, 3 found, 1 updated, 1 deleted."""
    with client() as c:
        users = c.shop.users
        users.insert_one({"name": "ada", "n": 1})
        users.insert_many([{"name": "bob", "n": 2}, {"name": "cy", "n": 3}, {"name": "di", "n": 4}])
        found = list(users.find({"n": {"$gte": 2}}))
        assert len(found) == 3, found
        updated = users.update_one({"name": "ada"}, {"$set": {"n": 10}})
        assert updated.modified_count == 1, updated.raw_result
        deleted = users.delete_one({"name": "bob"})
        assert deleted.deleted_count == 1, deleted.raw_result


def errors():
    """A duplicate `_id` (a write error, code 11000) and a command the server does not know."""
    from pymongo.errors import DuplicateKeyError, OperationFailure

    with client() as c:
        orders = c.shop.orders
        orders.insert_one({"_id": "dup", "total": 1})
        try:
            orders.insert_one({"_id": "dup", "total": 2})
            raise AssertionError("the duplicate insert succeeded")
        except DuplicateKeyError:
            pass
        try:
            c.shop.command("ztNoSuchCommand")
            raise AssertionError("the unknown command succeeded")
        except OperationFailure:
            pass


def large():
    """A find whose reply (about 40 KB) the capture cuts, then a small find after it."""
    with client() as c:
        items = c.shop.items
        items.insert_many([{"i": i, "pad": "x" * 100} for i in range(300)])
        assert len(list(items.find({}))) >= 300
        assert items.find_one({"i": 7})["i"] == 7


def unacknowledged():
    """An insert with write concern w=0: the server sends no reply."""
    from pymongo import WriteConcern

    with client() as c:
        events = c.shop.get_collection("events", write_concern=WriteConcern(w=0))
        events.insert_one({"kind": "fire-and-forget"})
        # A later acknowledged call, so the unacknowledged one is on the wire.
        c.shop.events.find_one({})


SCENARIOS = {
    "/crud": crud,
    "/errors": errors,
    "/large": large,
    "/unacknowledged": unacknowledged,
}


if __name__ == "__main__":
    serve(SCENARIOS)
