"""A psycopg2 (libpq) client run against Poold by AuthQueryClientTests, with Debian's /usr/bin/python3:
check.py HOST PORT DATABASE USER TABLE; passwords from CHECK_PASSWORD and CHECK_WRONG_PASSWORD.
Prints one "key=value" line per step; any failure is an exception and a non-zero exit."""
import os
import sys

import psycopg2

host, port, database, user, table = sys.argv[1:6]
dsn = dict(host=host, port=port, dbname=database, user=user, sslmode="require", channel_binding="require",
           application_name="psycopg2-check")
with psycopg2.connect(password=os.environ["CHECK_PASSWORD"], **dsn) as connection:
    print("libpq=%d" % psycopg2.extensions.libpq_version())
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        print("user=%s" % cursor.fetchone()[0])
        cursor.execute("INSERT INTO " + table + " (who) VALUES (%s)", ("psycopg2",))
        print("inserted=%d" % cursor.rowcount)
        cursor.execute("SELECT count(*) FROM " + table + " WHERE who = %s", ("psycopg2",))
        print("read=%d" % cursor.fetchone()[0])
    connection.commit()
connection.close()

try:
    psycopg2.connect(password=os.environ["CHECK_WRONG_PASSWORD"], **dsn).close()
    print("wrong_password=accepted")
    sys.exit(3)
except psycopg2.OperationalError as e:
    # libpq reports a failed login as OperationalError without pgcode; the server's text carries the SQLSTATE-bearing message.
    print("wrong_password_message=%s" % str(e).strip().splitlines()[-1])
