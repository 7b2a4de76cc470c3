// A JDBC client run against Poold in transaction mode by TransactionModeDriverTests (single-file source launch:
// java -cp /usr/share/java/postgresql.jar TxCheck.java HOST PORT DATABASE USER TABLE CLIENTS ROUNDS).
// CLIENTS connections on as many threads, each with its own statement_timeout, run ROUNDS transactions through
// server-side prepared statements (prepareThreshold 2: named statements from the second use on): an insert, a read of
// its own rows inside the transaction, a check that its own setting is in force; every fifth transaction is rolled
// back, every third round also runs an autocommit prepared read. Prints "client_K_rows=N" (the rows it committed) and
// "errors=N" (wrong answers); any exception is printed and counted.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicInteger;

public class TxCheck {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        String user = args[3];
        String table = args[4];
        int clients = Integer.parseInt(args[5]);
        int rounds = Integer.parseInt(args[6]);
        AtomicInteger errors = new AtomicInteger();
        int[] committed = new int[clients];
        List<Thread> threads = new ArrayList<>();
        for (int k = 0; k < clients; k++) {
            final int client = k;
            Thread t = new Thread(() -> {
                try {
                    committed[client] = run(url, user, table, client, rounds, errors);
                } catch (Exception e) {
                    System.out.println("exception_" + client + "=" + e.toString().replace('\n', ' '));
                    errors.incrementAndGet();
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join();
        }
        for (int k = 0; k < clients; k++) {
            System.out.println("client_" + k + "_rows=" + committed[k]);
        }
        System.out.println("errors=" + errors.get());
    }

    private static int run(String url, String user, String table, int client, int rounds, AtomicInteger errors) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", "");
        props.setProperty("sslmode", "disable");
        props.setProperty("prepareThreshold", "2");
        props.setProperty("ApplicationName", "jdbc-tx-" + client);
        String timeout = (client + 1) + "s";
        int rows = 0;
        try (Connection c = DriverManager.getConnection(url, props)) {
            try (Statement s = c.createStatement()) {
                s.execute("SET statement_timeout = '" + timeout + "'");
            }
            try (PreparedStatement insert = c.prepareStatement("INSERT INTO " + table + " (client, n) VALUES (?, ?)");
                 PreparedStatement count = c.prepareStatement("SELECT count(*) FROM " + table + " WHERE client = ?");
                 PreparedStatement setting = c.prepareStatement("SELECT current_setting('statement_timeout')");
                 PreparedStatement twice = c.prepareStatement("SELECT ?::int * 2")) {
                for (int i = 0; i < rounds; i++) {
                    c.setAutoCommit(false);
                    insert.setInt(1, client);
                    insert.setInt(2, i);
                    check(insert.executeUpdate() == 1, client, "insert", errors);
                    count.setInt(1, client);
                    try (ResultSet r = count.executeQuery()) {
                        r.next();
                        check(r.getLong(1) == rows + 1, client, "own rows " + r.getLong(1) + " != " + (rows + 1), errors);
                    }
                    try (ResultSet r = setting.executeQuery()) {
                        r.next();
                        check(r.getString(1).equals(timeout), client, "statement_timeout " + r.getString(1) + " != " + timeout, errors);
                    }
                    if (i % 5 == 4) {
                        c.rollback();
                    } else {
                        c.commit();
                        rows++;
                    }
                    c.setAutoCommit(true);
                    if (i % 3 == 0) {
                        twice.setInt(1, i);
                        try (ResultSet r = twice.executeQuery()) {
                            r.next();
                            check(r.getInt(1) == 2 * i, client, "autocommit read", errors);
                        }
                    }
                }
            }
        }
        return rows;
    }

    private static void check(boolean ok, int client, String what, AtomicInteger errors) {
        if (!ok) {
            System.out.println("wrong_" + client + "=" + what);
            errors.incrementAndGet();
        }
    }
}
