// A Java client of memcached (Debian's libspymemcached-java, text protocol),
// run from source by tests/servers/db_app.py as its child:
//   java -cp /usr/share/java/spymemcached.jar SpyClient.java HOST PORT
// Two sets, a get, a three-key bulk get (one `get` command) and a delete, all
// written and read by spymemcached's own I/O thread. Prints "ok".
import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.Map;
import net.spy.memcached.MemcachedClient;

public class SpyClient {
    public static void main(String[] args) throws Exception {
        MemcachedClient client =
                new MemcachedClient(new InetSocketAddress(args[0], Integer.parseInt(args[1])));
        client.set("spy:1", 0, "ann").get();
        client.set("spy:2", 0, "bob").get();
        if (!"ann".equals(client.get("spy:1"))) {
            throw new IllegalStateException("spy:1 is not ann");
        }
        Map<String, Object> found = client.getBulk(Arrays.asList("spy:1", "spy:2", "spy:3"));
        if (found.size() != 2) {
            throw new IllegalStateException("bulk get found " + found);
        }
        client.delete("spy:2").get();
        client.shutdown();
        System.out.println("ok");
    }
}
