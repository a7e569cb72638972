"""An HTTP service that calls databases while serving its requests, for the
database end-to-end tests (tests/tests/databases.rs). Run with /usr/bin/python3
(the Debian client libraries: python3-psycopg2, python3-psycopg, python3-pymysql,
python3-redis, python3-pymemcache; libdbd-mariadb-perl for db_prepare.pl).

    db_app.py PORT

Where the servers are comes from the environment: ZT_PG_PORT, ZT_MARIADB_PORT,
ZT_REDIS_PORT, ZT_MEMCACHED_PORT, ZT_DATABASE (all on 127.0.0.1). Prints
"listening" once its socket is bound.

One GET path per scenario, each on fresh connections (so the agent sees them
from their first byte): answers 200 "ok" when every call went as expected,
500 with the traceback otherwise.
"""
import os
import shutil
import subprocess
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
PG_BIN = "/usr/lib/postgresql/15/bin"


def env_port(name):
    return int(os.environ[name])


def database():
    return os.environ.get("ZT_DATABASE", "shop")


def pg_dsn(sslmode="disable"):
    return (
        f"host={HOST} port={env_port('ZT_PG_PORT')} user=postgres "
        f"dbname={database()} sslmode={sslmode}"
    )


def expect_error(call, code_of, code):
    """Runs call, which must fail with the server's error `code`."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - each client has its own error class
        if code_of(e) != code:
            raise AssertionError(f"expected error {code}, got {code_of(e)!r}: {e}") from e
        return
    raise AssertionError(f"expected error {code}, got none")


def pg_simple():
    """psycopg2: simple-protocol queries (values interpolated by the client)."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM accounts WHERE id = %s", (1,))
        assert cur.fetchone() == ("ann",)
        cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (5, 2))
        assert cur.rowcount == 1
    conn.close()


def pg_errors():
    """psycopg2: a syntax error (42601) and a missing table (42P01)."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        expect_error(lambda: cur.execute("SELEC broken"), lambda e: e.pgcode, "42601")
        expect_error(
            lambda: cur.execute("SELECT * FROM missing_table WHERE id = 7"),
            lambda e: e.pgcode,
            "42P01",
        )
    conn.close()


def pg_prepared():
    """psycopg 3: the extended protocol with server-side parameters, a named
    prepared statement run twice; then SQL PREPARE/EXECUTE through psycopg2."""
    import psycopg
    import psycopg2

    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT name FROM accounts WHERE id = %s", (2,)).fetchone()
        assert row == ("bob",), row
        for account in (1, 3):
            conn.execute(
                "SELECT balance FROM accounts WHERE id = %s", (account,), prepare=True
            ).fetchone()
    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("PREPARE byname(text) AS SELECT id FROM accounts WHERE name = $1")
        cur.execute("EXECUTE byname('cy')")
        assert cur.fetchone() == (3,)
    conn.close()


def pg_batch():
    """Two statements in one simple query, COPY out (psycopg2), and psycopg 3's
    pipeline mode (three statements and one Sync in one write)."""
    import io

    import psycopg
    import psycopg2

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one; SELECT name FROM accounts WHERE id = 2")
        assert cur.fetchone() == ("bob",)
        out = io.StringIO()
        cur.copy_expert("COPY accounts TO STDOUT", out)
        assert out.getvalue().count("\n") >= 3
    conn.close()
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        with conn.pipeline():
            conn.execute("SELECT name FROM accounts WHERE id = %s", (3,))
            conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (1, 3))
            conn.execute("SELECT count(*) FROM accounts")


def pg_tls():
    """psycopg2 (libpq, libssl) over TLS: SSLRequest, then the query encrypted."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn("require"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT balance FROM accounts WHERE name = %s", ("cy",))
        assert cur.fetchone() is not None
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,), "not encrypted"
    conn.close()


WIDE_SIZES = (5, 60, 500, 5000)


def pg_wide_results():
    """Results wider than the 512-byte capture, as ORMs read them: 5 to 5000
    rows of 100 bytes through psycopg2 (simple protocol), psycopg 3
    (extended protocol) and psycopg2 over TLS, a query that fails after
    sending 5000 rows (psycopg2, both ways), then one small query each."""
    import psycopg
    import psycopg2

    query = "SELECT g AS {0}, repeat('x', 90) || g FROM generate_series(1, %s) g"
    for label, sslmode in (("simple_row", "disable"), ("tls_row", "require")):
        conn = psycopg2.connect(pg_dsn(sslmode))
        conn.autocommit = True
        with conn.cursor() as cur:
            for n in WIDE_SIZES:
                cur.execute(query.format(label), (n,))
                assert len(cur.fetchall()) == n
            # Fails at row 5000, after the server sent the rows before it.
            expect_error(
                lambda: cur.execute(
                    "SELECT g AS failing_row, repeat('x', 90), 1 / (5000 - g) "
                    "FROM generate_series(1, 6000) g"
                ),
                lambda e: e.pgcode,
                "22012",
            )
            cur.execute("SELECT name FROM accounts WHERE id = %s", (1,))
            assert cur.fetchone() == ("ann",)
        conn.close()
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        for n in WIDE_SIZES:
            assert len(conn.execute(query.format("extended_row"), (n,)).fetchall()) == n
        assert conn.execute("SELECT name FROM accounts WHERE id = %s", (2,)).fetchone() == ("bob",)


def mysql_wide_results():
    """Results wider than the 512-byte capture through pymysql: 5 to 5000
    rows of 100 bytes (MariaDB's sequence engine), then a small query."""
    conn = mysql_connect()
    with conn.cursor() as cur:
        for n in WIDE_SIZES:
            cur.execute("SELECT seq AS wide_row, CONCAT(REPEAT('x', 90), seq) FROM seq_1_to_%d" % n)
            assert len(cur.fetchall()) == n
        cur.execute("SELECT name FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == ("pen",)
    conn.close()


def mysql_connect():
    import pymysql

    return pymysql.connect(
        host=HOST,
        port=env_port("ZT_MARIADB_PORT"),
        user="root",
        database=database(),
        autocommit=True,
    )


def mysql_tls():
    """pymysql over TLS (Python's ssl, libssl): SSLRequest, then the
    handshake response and the queries encrypted."""
    import ssl

    import pymysql

    conn = pymysql.connect(
        host=HOST,
        port=env_port("ZT_MARIADB_PORT"),
        user="root",
        database=database(),
        autocommit=True,
        ssl={"check_hostname": False},  # no CA given: the self-signed certificate is not verified
    )
    assert isinstance(conn._sock, ssl.SSLSocket), "not encrypted"
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM items WHERE id = %s", (2,))
        assert cur.fetchone() == ("ink",)
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        name, cipher = cur.fetchone()
        assert cipher, "the server says the session is not encrypted"
        expect_error(
            lambda: cur.execute("SELECT * FROM missing_table"),
            lambda e: e.args[0] if isinstance(e, pymysql.MySQLError) else None,
            1146,
        )
    conn.close()


def mysql_queries():
    """pymysql: COM_QUERY (values interpolated by the client), a missing table
    (1146), and SQL PREPARE/EXECUTE."""
    import pymysql

    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == ("pen",)
        cur.execute("UPDATE items SET name = %s WHERE id = %s", ("quill", 3))
        expect_error(
            lambda: cur.execute("SELECT * FROM missing_table"),
            lambda e: e.args[0] if isinstance(e, pymysql.MySQLError) else None,
            1146,
        )
        cur.execute("PREPARE byid FROM 'SELECT name FROM items WHERE id = ?'")
        cur.execute("SET @id = 2")
        cur.execute("EXECUTE byid USING @id")
        assert cur.fetchone() == ("ink",)
    conn.close()


def mysql_prepared():
    """COM_STMT_PREPARE/EXECUTE: Perl DBD::MariaDB (db_prepare.pl), a child of this process."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "db_prepare.pl")
    run(["perl", script, str(env_port("ZT_MARIADB_PORT")), database()])


def large_results():
    """Results and commands far past the 512-byte capture, then small calls on
    the same connections: a 5000-row SELECT (psycopg2), a 20000-row SELECT
    (pymysql, MariaDB's sequence engine), a 3000-element RPUSH read back
    with LRANGE (redis-py), a 50-key get of 14 KB (pymemcache)."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT g, 'row number ' || g FROM generate_series(1, %s) g", (5000,))
        assert len(cur.fetchall()) == 5000
        cur.execute("SELECT name FROM accounts WHERE id = %s", (1,))
        assert cur.fetchone() == ("ann",)
    conn.close()
    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute("SELECT seq, CONCAT('row number ', seq) FROM seq_1_to_20000")
        assert len(cur.fetchall()) == 20000
        cur.execute("SELECT name FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == ("pen",)
    conn.close()
    r = redis_client()
    r.delete("large:list")
    r.rpush("large:list", *["element number %d" % i for i in range(3000)])
    assert len(r.lrange("large:list", 0, -1)) == 3000
    r.set("large:after", "small")
    assert r.get("large:after") == b"small"
    r.close()
    from pymemcache.client.base import Client

    client = Client((HOST, env_port("ZT_MEMCACHED_PORT")), default_noreply=False)
    keys = ["large:%d" % i for i in range(50)]
    for i, key in enumerate(keys):
        client.set(key, ("value %d " % i) * 30)
    assert len(client.get_many(keys)) == 50
    client.set("large:after", "small")
    assert client.get("large:after") == b"small"
    client.close()


def redis_client():
    import redis

    return redis.Redis(host=HOST, port=env_port("ZT_REDIS_PORT"), db=3)


def redis_commands():
    """redis-py: SELECT 3 (db=3) at connect, commands, an error reply."""
    import redis

    r = redis_client()
    r.set("page:home", "hello")
    assert r.get("page:home") == b"hello"
    expect_error(
        lambda: r.lpush("page:home", "x"),
        lambda e: str(e).split(" ", 1)[0] if isinstance(e, redis.ResponseError) else None,
        "WRONGTYPE",
    )
    r.close()


def redis_pipeline():
    """redis-py: four commands in one pipeline (one write, one read)."""
    r = redis_client()
    pipe = r.pipeline(transaction=False)
    pipe.set("hits", 0)
    pipe.incrby("hits", 2)
    pipe.incrby("hits", 3)
    pipe.get("hits")
    assert pipe.execute() == [True, 2, 5, b"5"]
    r.close()


def redis_transaction():
    """redis-py: a MULTI/EXEC pipeline (transaction=True)."""
    r = redis_client()
    pipe = r.pipeline(transaction=True)
    pipe.incrby("visits", 1)
    pipe.expire("visits", 60)
    pipe.get("visits")
    result = pipe.execute()
    assert result[1] is True, result
    r.close()


def memcached_calls():
    """pymemcache: set, get, and one get of three keys (two hits)."""
    from pymemcache.client.base import Client

    client = Client((HOST, env_port("ZT_MEMCACHED_PORT")))
    client.set("user:1", "ann")
    client.set("user:2", "bob")
    assert client.get("user:1") == b"ann"
    found = client.get_many(["user:1", "user:2", "user:3"])
    assert found == {"user:1": b"ann", "user:2": b"bob"}, found
    # incr of a value that is not a number: CLIENT_ERROR from the server.
    from pymemcache.exceptions import MemcacheClientError

    expect_error(
        lambda: client.incr("user:1", 1),
        lambda e: "CLIENT_ERROR" if isinstance(e, MemcacheClientError) else None,
        "CLIENT_ERROR",
    )
    client.close()


def batches():
    """Batches written at once, as clients write them: each request is a span.

    - redis-py: a pipeline of 300 SETs, then one of 300 GETs (written in
      pieces of about 6,000 bytes);
    - redis.asyncio: a pipeline of 2,000 SETs (one write of about 80 KB, the
      replies read in one);
    - redis-cli --pipe: 3,000 SETs of mass insertion, 16 KiB at a time while
      the replies are read;
    - Node.js (redis_corked.js, when node is installed): 1,000 SETs written
      as node-redis writes them, one writev of 45 KB;
    - psycopg 3: executemany of 1,000 INSERTs (a pipeline: the replies come
      in 8 KiB reads that start amid a message), in clear and over TLS;
    - psycopg2: execute_batch of 300 INSERTs, 100 joined in each query
      (6 KB), and execute_values of 300 rows in one INSERT (5 KB);
    - pymysql: executemany of 300 rows (one INSERT of 6 KB), and a SELECT
      with an IN list of 1,000 ids (4 KB);
    - pymemcache: set_many of 300 values and one get_many of the 300 keys.

    Ends with GET batches:end through redis-py."""
    import asyncio

    import psycopg
    import redis.asyncio
    from pymemcache.client.base import Client

    r = redis_client()
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"batch:{i}", f"value-{i}")
    assert pipe.execute() == [True] * 300
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.get(f"batch:{i}")
    assert pipe.execute() == [f"value-{i}".encode() for i in range(300)]

    async def async_pipeline():
        client = redis.asyncio.Redis(host=HOST, port=env_port("ZT_REDIS_PORT"), db=3)
        pipe = client.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"abatch:{i}", f"value-{i}")
        assert await pipe.execute() == [True] * 2000
        await client.close()

    asyncio.run(async_pipeline())

    commands = "".join(
        f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(v)}\r\n{v}\r\n"
        for k, v in ((f"mass:{i}", f"value-{i}") for i in range(3000))
    )
    done = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(env_port("ZT_REDIS_PORT")), "-n", "3", "--pipe"],
        input=commands.encode(), capture_output=True, timeout=20,
    )
    assert done.returncode == 0 and b"errors: 0, replies: 3000" in done.stdout, done

    # Node.js, as node-redis writes: 1,000 SETs in one writev of 45 KB.
    if shutil.which("node"):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redis_corked.js")
        run(["node", script, str(env_port("ZT_REDIS_PORT")), "1000"])

    for table, sslmode in (("batch_rows", "disable"), ("tls_batch_rows", "require")):
        with psycopg.connect(pg_dsn(sslmode), autocommit=True) as conn:
            conn.execute(f"CREATE TEMP TABLE {table} (id int, name text)")
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} (id, name) VALUES (%s, %s)",
                    [(i, f"name-{i}") for i in range(1000)],
                )
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert count == (1000,), count

    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE joined_rows (id int, name text)")
        rows = [(i, f"name-{i}") for i in range(300)]
        psycopg2.extras.execute_batch(
            cur, "INSERT INTO joined_rows (id, name) VALUES (%s, %s)", rows, page_size=100
        )
        psycopg2.extras.execute_values(
            cur, "INSERT INTO joined_rows (id, name) VALUES %s", rows, page_size=300
        )
        cur.execute("SELECT count(*) FROM joined_rows")
        assert cur.fetchone() == (600,)
    conn.close()

    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE many_items (id int, name varchar(40))")
        cur.executemany(
            "INSERT INTO many_items (id, name) VALUES (%s, %s)",
            [(i, f"name-{i}") for i in range(300)],
        )
        ids = ",".join(str(i) for i in range(1000))
        cur.execute(f"SELECT id FROM many_items WHERE id IN ({ids})")
        assert len(cur.fetchall()) == 300
    conn.close()

    client = Client((HOST, env_port("ZT_MEMCACHED_PORT")))
    values = {f"many:{i}": f"value-{i}" for i in range(300)}
    assert client.set_many(values) == []
    assert len(client.get_many(list(values))) == 300
    client.close()

    assert r.get("batches:end") is None
    r.close()


# Connections opened by /early/open and used by /early/use: a pool the
# service made before the agent started.
EARLY = {}


def early_open():
    import psycopg2

    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    EARLY["pg"] = conn
    r = redis_client()
    r.ping()
    EARLY["redis"] = r


def early_use():
    with EARLY["pg"].cursor() as cur:
        cur.execute("SELECT id, name FROM accounts WHERE id = %s", (3,))
        assert cur.fetchone() is not None
    assert EARLY["redis"].get("early:key") is None


def run(argv):
    done = subprocess.run(argv, capture_output=True, timeout=20)
    if done.returncode != 0:
        raise AssertionError(f"{argv} failed ({done.returncode}): {done.stderr.decode()}")


def cli_clients():
    """psql, mariadb and redis-cli (RESP2, then RESP3), as children of this process."""
    run(
        [f"{PG_BIN}/psql", "-X", "-h", HOST, "-p", str(env_port("ZT_PG_PORT")),
         "-U", "postgres", "-d", database(), "-c", "SELECT count(*) FROM accounts"]
    )
    run(
        ["mariadb", "--no-defaults", "--skip-ssl", "-h", HOST,
         "-P", str(env_port("ZT_MARIADB_PORT")), "-u", "root", database(),
         "-e", "SELECT count(*) FROM items"]
    )
    redis_cli = ["redis-cli", "-h", HOST, "-p", str(env_port("ZT_REDIS_PORT")), "-n", "4"]
    run(redis_cli + ["HSET", "cli:h", "runs", "1"])
    # RESP3 (HELLO 3 first): the hash comes back as a map.
    run(redis_cli + ["-3", "HGETALL", "cli:h"])


def jdbc_client():
    """pgjdbc (Java), run from source as a child of this process."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "JdbcClient.java")
    run(["java", "-cp", "/usr/share/java/postgresql.jar", source,
         HOST, str(env_port("ZT_PG_PORT")), database()])


def mariadb_jdbc_client():
    """MariaDB Connector/J (Java), run from source as a child of this process."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "MariadbJdbcClient.java")
    run(["java", "-cp", "/usr/share/java/mariadb-java-client.jar", source,
         HOST, str(env_port("ZT_MARIADB_PORT")), database()])


def spymemcached_client():
    """spymemcached (Java), run from source as a child of this process."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "SpyClient.java")
    run(["java", "-cp", "/usr/share/java/spymemcached.jar", source,
         HOST, str(env_port("ZT_MEMCACHED_PORT"))])


ROUTES = {
    "/pg/simple": pg_simple,
    "/pg/errors": pg_errors,
    "/pg/prepared": pg_prepared,
    "/pg/batch": pg_batch,
    "/pg/tls": pg_tls,
    "/mysql/queries": mysql_queries,
    "/mysql/tls": mysql_tls,
    "/mysql/prepared": mysql_prepared,
    "/redis/commands": redis_commands,
    "/redis/pipeline": redis_pipeline,
    "/redis/transaction": redis_transaction,
    "/memcached": memcached_calls,
    "/large": large_results,
    "/pg/wide": pg_wide_results,
    "/mysql/wide": mysql_wide_results,
    "/cli": cli_clients,
    "/jdbc": jdbc_client,
    "/mariadb-jdbc": mariadb_jdbc_client,
    "/spymemcached": spymemcached_client,
    "/batches": batches,
    "/early/open": early_open,
    "/early/use": early_use,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        scenario = ROUTES.get(self.path)
        if scenario is None:
            self.reply(404, b"no such scenario\n")
            return
        try:
            scenario()
        except Exception:  # noqa: BLE001 - the test prints what went wrong
            self.reply(500, traceback.format_exc().encode())
            return
        self.reply(200, b"ok\n")


def main():
    server = ThreadingHTTPServer((HOST, int(sys.argv[1])), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
