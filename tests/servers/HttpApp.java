// A Java HTTP server on the JDK's own com.sun.net.httpserver, run from source
// (java HttpApp.java PORT): GET /hello -> 200, anything else -> 404. Prints
// "listening" once it accepts connections.
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class HttpApp {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        server.createContext("/", exchange -> {
            String path = exchange.getRequestURI().getPath();
            boolean hello = path.equals("/hello");
            byte[] body = (hello ? "hello from java\n" : "not found\n").getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain");
            exchange.sendResponseHeaders(hello ? 200 : 404, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
        System.out.println("listening");
    }
}
