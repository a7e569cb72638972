//! A tonic gRPC server and client for the end-to-end tests: a hand-written
//! service (prost messages, tonic's prost codec; no protoc needed).
//!
//!   zerotrace-test-grpc server PORT   serves zerotrace.test.Echo on 127.0.0.1:PORT
//!   zerotrace-test-grpc client PORT   waits for a line on stdin, then makes one
//!                                     call of each kind and prints
//!                                     "<method> <code> <detail>"
//!
//! Methods: Say (unary, OK), Count (server streaming: N messages 100 ms
//! apart), Find (NOT_FOUND, a trailers-only response), Fail (UNAVAILABLE).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{http, BoxFuture, BoxStream, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

const SERVICE: &str = "zerotrace.test.Echo";

#[derive(Clone, PartialEq, prost::Message)]
struct Text {
    #[prost(string, tag = "1")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Number {
    #[prost(uint32, tag = "1")]
    value: u32,
}

struct Say;
impl UnaryService<Text> for Say {
    type Response = Text;
    type Future = BoxFuture<Response<Text>, Status>;
    fn call(&mut self, request: Request<Text>) -> Self::Future {
        let value = format!("hello {}", request.into_inner().value);
        Box::pin(async move { Ok(Response::new(Text { value })) })
    }
}

struct Find;
impl UnaryService<Text> for Find {
    type Response = Text;
    type Future = BoxFuture<Response<Text>, Status>;
    fn call(&mut self, request: Request<Text>) -> Self::Future {
        let what = request.into_inner().value;
        Box::pin(async move { Err(Status::not_found(format!("no such item: {what}"))) })
    }
}

struct Fail;
impl UnaryService<Text> for Fail {
    type Response = Text;
    type Future = BoxFuture<Response<Text>, Status>;
    fn call(&mut self, _: Request<Text>) -> Self::Future {
        Box::pin(async move { Err(Status::unavailable("backend down")) })
    }
}

struct Count;
impl ServerStreamingService<Number> for Count {
    type Response = Number;
    type ResponseStream = BoxStream<Number>;
    type Future = BoxFuture<Response<BoxStream<Number>>, Status>;
    fn call(&mut self, request: Request<Number>) -> Self::Future {
        use tonic::codegen::tokio_stream::{self, StreamExt};
        let n = request.into_inner().value;
        let stream = tokio_stream::iter(0..n).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Number { value: i })
        });
        Box::pin(async move { Ok(Response::new(Box::pin(stream) as BoxStream<Number>)) })
    }
}

/// The router tonic's code generator would write: path → handler.
#[derive(Clone)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit_once('/')
            .map(|(_, m)| m.to_owned());
        Box::pin(async move {
            let text = || Grpc::new(ProstCodec::<Text, Text>::default());
            Ok(match method.as_deref() {
                Some("Say") => text().unary(Say, request).await,
                Some("Find") => text().unary(Find, request).await,
                Some("Fail") => text().unary(Fail, request).await,
                Some("Count") => {
                    Grpc::new(ProstCodec::<Number, Number>::default())
                        .server_streaming(Count, request)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn serve(port: u16) -> Result<(), String> {
    tonic::transport::Server::builder()
        .add_service(EchoServer)
        .serve(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| format!("server: {e}"))
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

async fn unary(client: &mut Client, method: &'static str, value: &str) -> Result<String, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::from_static(method);
    let request = Request::new(Text {
        value: value.into(),
    });
    let response = client
        .unary(request, path, ProstCodec::<Text, Text>::default())
        .await?;
    Ok(response.into_inner().value)
}

async fn count(client: &mut Client, n: u32) -> Result<String, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::from_static("/zerotrace.test.Echo/Count");
    let mut stream = client
        .server_streaming(
            Request::new(Number { value: n }),
            path,
            ProstCodec::<Number, Number>::default(),
        )
        .await?
        .into_inner();
    let mut received = 0;
    while stream.message().await?.is_some() {
        received += 1;
    }
    Ok(received.to_string())
}

fn report(method: &str, result: Result<String, Status>) {
    match result {
        Ok(detail) => println!("{method} OK {detail}"),
        Err(status) => println!("{method} {:?} {}", status.code(), status.message()),
    }
}

async fn client(port: u16) -> Result<(), String> {
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| format!("stdin: {e}"))?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = Client::new(channel);
    report(
        "Say",
        unary(&mut client, "/zerotrace.test.Echo/Say", "tonic").await,
    );
    report("Count", count(&mut client, 3).await);
    report(
        "Find",
        unary(&mut client, "/zerotrace.test.Echo/Find", "42").await,
    );
    report(
        "Fail",
        unary(&mut client, "/zerotrace.test.Echo/Fail", "").await,
    );
    println!("done");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, port) = match args.as_slice() {
        [_, mode, port] => (mode.as_str(), port.parse::<u16>().ok()),
        _ => ("", None),
    };
    let Some(port) = port else {
        eprintln!("usage: zerotrace-test-grpc server|client PORT");
        std::process::exit(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match mode {
            "server" => serve(port).await,
            "client" => client(port).await,
            other => Err(format!("unknown mode {other:?}")),
        }
    });
    if let Err(e) = result {
        eprintln!("zerotrace-test-grpc: {e}");
        std::process::exit(1);
    }
}
