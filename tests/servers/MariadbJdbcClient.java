// A Java client of MariaDB through JDBC (Debian's libmariadb-java, MariaDB
// Connector/J 2.7), run from source by tests/servers/db_app.py as its child:
//   java -cp /usr/share/java/mariadb-java-client.jar MariadbJdbcClient.java HOST PORT DATABASE
// With useServerPrepStmts, a PreparedStatement is COM_STMT_PREPARE once and
// COM_STMT_EXECUTE per run (three runs); a Statement query is COM_QUERY; a
// query on a missing table fails with error 1146. Prints "ok".
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class MariadbJdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:mariadb://" + args[0] + ":" + args[1] + "/" + args[2]
                + "?user=root&useServerPrepStmts=true&useSsl=false";
        try (Connection connection = DriverManager.getConnection(url)) {
            try (Statement statement = connection.createStatement();
                 ResultSet rows = statement.executeQuery("SELECT count(*) FROM items")) {
                rows.next();
            }
            try (PreparedStatement byId =
                         connection.prepareStatement("SELECT name FROM items WHERE id = ?")) {
                for (int id = 1; id <= 3; id++) {
                    byId.setInt(1, id);
                    try (ResultSet rows = byId.executeQuery()) {
                        if (!rows.next()) {
                            throw new IllegalStateException("no item " + id);
                        }
                    }
                }
            }
            try (Statement statement = connection.createStatement()) {
                statement.executeQuery("SELECT * FROM jdbc_missing_table");
                throw new IllegalStateException("the missing table did not fail");
            } catch (SQLException e) {
                if (e.getErrorCode() != 1146) {
                    throw e;
                }
            }
        }
        System.out.println("ok");
    }
}
