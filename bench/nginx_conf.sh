# Sourced by the nginx benchmarks: the server they measure.
# write_nginx_conf DIR PORT WORKERS: DIR/nginx.conf, nginx returning a 17-byte
# body on 127.0.0.1:PORT, access log off, pid and error log in DIR.
write_nginx_conf() {
  cat > "$1/nginx.conf" <<CONF
worker_processes $3;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$2;
    location / { return 200 "hello from nginx\n"; }
  }
}
CONF
}
