"""A psycopg2 (libpq) client run against Poold in transaction mode by TransactionModeDriverTests, with Debian's
/usr/bin/python3: txcheck.py HOST PORT DATABASE USER TABLE CLIENTS ROUNDS.
CLIENTS connections on as many threads, each with its own search_path schema (txdrv_K, made by the test) and
statement_timeout, run ROUNDS transactions as psycopg2 does (BEGIN sent before the first statement): an insert, a read
of its own rows inside the transaction, the settings in force, and every other round a server-side (named) cursor
read in batches; every fifth transaction is rolled back. Prints "client_K_rows=N" and "errors=N"; an exception is
printed and counted."""
import sys
import threading

import psycopg2

host, port, database, user, table = sys.argv[1:6]
clients, rounds = int(sys.argv[6]), int(sys.argv[7])
errors = []
committed = [0] * clients


def check(ok, client, what):
    if not ok:
        errors.append("%d: %s" % (client, what))
        print("wrong_%d=%s" % (client, what), flush=True)


def run(client):
    schema = "txdrv_%d" % client
    timeout = "%ds" % (client + 1)
    connection = psycopg2.connect(host=host, port=port, dbname=database, user=user, sslmode="disable",
                                  application_name="psycopg2-tx-%d" % client)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET search_path = " + schema + ", public")
            cursor.execute("SET statement_timeout = %s", (timeout,))
        connection.autocommit = False
        rows = 0
        for i in range(rounds):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO " + table + " (client, n) VALUES (%s, %s)", (client, i))
                cursor.execute("SELECT count(*) FROM " + table + " WHERE client = %s", (client,))
                check(cursor.fetchone()[0] == rows + 1, client, "own rows")
                cursor.execute("SELECT current_schema(), current_setting('statement_timeout')")
                check(cursor.fetchone() == (schema, timeout), client, "settings")
            if i % 2 == 0:
                with connection.cursor(name="rows_%d" % i) as named:
                    named.itersize = 3
                    named.execute("SELECT n FROM " + table + " WHERE client = %s ORDER BY n", (client,))
                    check(len(list(named)) == rows + 1, client, "named cursor")
            if i % 5 == 4:
                connection.rollback()
            else:
                connection.commit()
                rows += 1
        committed[client] = rows
    except Exception as e:  # reported, and the test fails on it
        errors.append("%d: %r" % (client, e))
        print("exception_%d=%r" % (client, e), flush=True)
    finally:
        connection.close()


threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for k in range(clients):
    print("client_%d_rows=%d" % (k, committed[k]))
print("errors=%d" % len(errors))
