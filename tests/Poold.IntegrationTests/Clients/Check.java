// A JDBC client run against Poold by AuthQueryClientTests (single-file source launch:
// java -cp /usr/share/java/postgresql.jar Check.java HOST PORT DATABASE USER TABLE).
// The password comes from CHECK_PASSWORD, a wrong one from CHECK_WRONG_PASSWORD (not on the command line).
// Prints one "key=value" line per step; any failure is an exception and a non-zero exit.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class Check {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        String user = args[3];
        String table = args[4];
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", System.getenv("CHECK_PASSWORD"));
        props.setProperty("sslmode", "require");
        props.setProperty("prepareThreshold", "3");
        props.setProperty("ApplicationName", "jdbc-check");
        try (Connection c = DriverManager.getConnection(url, props)) {
            System.out.println("driver=" + c.getMetaData().getDriverVersion());
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT current_user")) {
                r.next();
                System.out.println("user=" + r.getString(1));
            }
            c.setAutoCommit(false);
            try (PreparedStatement insert = c.prepareStatement("INSERT INTO " + table + " (who) VALUES (?)")) {
                insert.setString(1, "jdbc");
                System.out.println("inserted=" + insert.executeUpdate());
            }
            try (PreparedStatement read = c.prepareStatement("SELECT count(*) FROM " + table + " WHERE who = ?")) {
                read.setString(1, "jdbc");
                try (ResultSet r = read.executeQuery()) {
                    r.next();
                    System.out.println("read=" + r.getLong(1));
                }
            }
            c.commit();
            c.setAutoCommit(true);
            // Past prepareThreshold the driver switches to a named server-side statement and reuses it.
            long sum = 0;
            try (PreparedStatement p = c.prepareStatement("SELECT ?::int + 1")) {
                for (int i = 0; i < 10; i++) {
                    p.setInt(1, i);
                    try (ResultSet r = p.executeQuery()) {
                        r.next();
                        sum += r.getInt(1);
                    }
                }
                System.out.println("server_prepared=" + p.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
            }
            System.out.println("prepared_sum=" + sum);
        }

        Properties wrong = new Properties();
        wrong.putAll(props);
        wrong.setProperty("password", System.getenv("CHECK_WRONG_PASSWORD"));
        try (Connection c = DriverManager.getConnection(url, wrong)) {
            System.out.println("wrong_password=accepted");
            System.exit(3);
        } catch (SQLException e) {
            System.out.println("wrong_password_sqlstate=" + e.getSQLState());
        }
    }
}
