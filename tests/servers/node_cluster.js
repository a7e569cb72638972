// A Node.js cluster, as `node cluster` apps and PM2's cluster mode run: the
// primary forks two workers, listens on PORT when they ask (after forking
// them), accepts each connection and hands it to a worker (round robin,
// Node's default on Linux). The workers never hold the listening socket.
// A request is answered with the serving worker's pid. Prints "listening"
// once both workers are ready; exits if one dies (the port was taken).
// Usage: node node_cluster.js PORT
const cluster = require("cluster");
const http = require("http");

const port = Number(process.argv[2]);
const workers = 2;
if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_RR;
  let ready = 0;
  cluster.on("listening", () => {
    ready += 1;
    if (ready === workers) {
      console.log("listening");
    }
  });
  cluster.on("exit", () => process.exit(1));
  for (let i = 0; i < workers; i++) {
    cluster.fork();
  }
} else {
  http.createServer((req, res) => res.end(`${process.pid}\n`)).listen(port);
}
