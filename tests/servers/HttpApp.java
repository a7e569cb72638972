// A Java HTTP server on the JDK's own com.sun.net.httpserver, run from source
// (java HttpApp.java PORT): GET /hello -> 200, anything else -> 404. Prints
// "listening" once it accepts connections.
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

public class HttpApp {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        server.createContext("/", exchange -> {
            String path = exchange.getRequestURI().getPath();
            boolean hello = path.equals("/hello");
            byte[] body = (hello ? "hello from java\n" : "not found\n").getBytes(StandardCharsets.UTF_8);
            if (path.startsWith("/call/")) {
                // GET /call/<port>/<rest> -> GET http://127.0.0.1:<port>/<rest>, on this thread.
                String rest = path.substring("/call/".length());
                int slash = rest.indexOf('/');
                URL url = new URL("http://127.0.0.1:" + rest.substring(0, slash) + rest.substring(slash));
                HttpURLConnection call = (HttpURLConnection) url.openConnection();
                int status = call.getResponseCode();
                InputStream answer = status < 400 ? call.getInputStream() : call.getErrorStream();
                byte[] got = answer == null ? new byte[0] : answer.readAllBytes();
                body = ("called: " + new String(got, StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8);
                hello = true;
            }
            exchange.getResponseHeaders().set("Content-Type", "text/plain");
            exchange.sendResponseHeaders(hello ? 200 : 404, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.start();
        System.out.println("listening");
    }
}
