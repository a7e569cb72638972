// A Java client of PostgreSQL through JDBC (Debian's libpostgresql-jdbc-java,
// pgjdbc), run from source by tests/servers/db_app.py as its child:
//   java -cp /usr/share/java/postgresql.jar JdbcClient.java HOST PORT DATABASE
// A Statement query (the extended protocol, unnamed), a PreparedStatement run
// six times (pgjdbc switches to a named server-side statement at the fifth,
// prepareThreshold=5), an update in a transaction, and a query on a missing
// table (SQLSTATE 42P01). Prints "ok".
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2]
                + "?user=postgres&sslmode=disable";
        try (Connection connection = DriverManager.getConnection(url)) {
            try (Statement statement = connection.createStatement();
                 ResultSet rows = statement.executeQuery("SELECT count(*) FROM accounts")) {
                rows.next();
            }
            try (PreparedStatement byId =
                         connection.prepareStatement("SELECT name FROM accounts WHERE id = ?")) {
                for (int id = 1; id <= 6; id++) {
                    byId.setInt(1, id);
                    try (ResultSet rows = byId.executeQuery()) {
                        while (rows.next()) {
                            rows.getString(1);
                        }
                    }
                }
            }
            connection.setAutoCommit(false);
            try (PreparedStatement update =
                         connection.prepareStatement("UPDATE accounts SET balance = balance WHERE id = ?")) {
                update.setInt(1, 1);
                update.executeUpdate();
            }
            connection.commit();
            connection.setAutoCommit(true);
            try (Statement statement = connection.createStatement()) {
                statement.executeQuery("SELECT * FROM jdbc_missing_table");
                throw new IllegalStateException("the missing table did not fail");
            } catch (SQLException e) {
                if (!"42P01".equals(e.getSQLState())) {
                    throw e;
                }
            }
        }
        System.out.println("ok");
    }
}
