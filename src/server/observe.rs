//! Following each request to the end of its response: a tower service that makes an observer
//! from the request, carries it in the response future, then in the response body until the
//! body ends or is dropped. The gRPC metrics and the idle timeout's request tracking are both
//! observers; this module owns the plumbing, they own what is observed.
//!
//! The service is written by hand because no tower combinator fits: `map_request` sees only the
//! request, and `map_future` and `map_response` only the response, while an observer is made
//! from the one and must travel with the other.
//!
//! An observer is dropped when its request is over: with the response future if no response
//! comes (a client cancel), with the response when its head says everything, or with the
//! body. Its `Drop` is where it records that end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};
use tower::Service;

/// Watches one request's response.
pub(super) trait Observer: Send + Unpin + 'static {
    /// Sees the response's headers; returns the observer to carry in the body, or `None` when
    /// the headers tell everything (the body then goes unwrapped and the observer is dropped).
    fn on_headers(self, _headers: &HeaderMap) -> Option<Self>
    where
        Self: Sized,
    {
        Some(self)
    }

    /// Sees each frame of the body as it passes, and its end (`None`).
    fn on_frame(&mut self, _frame: &Option<Result<Frame<Bytes>, Status>>) {}
}

/// The service around `inner` that observes each request with the observer `make` returns
/// for it (`None`: that request is not observed).
#[derive(Debug, Clone)]
pub(super) struct Observe<S, M> {
    inner: S,
    make: M,
}

impl<S, M> Observe<S, M> {
    /// Observes `inner`'s requests with `make`; use it in `ServiceBuilder::layer_fn`.
    pub(super) fn new(inner: S, make: M) -> Self {
        Self { inner, make }
    }
}

impl<S, M, T> Service<http::Request<Body>> for Observe<S, M>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    M: Fn(&http::Request<Body>) -> Option<T>,
    T: Observer,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let observer = (self.make)(&request);
        let response = self.inner.call(request);
        Box::pin(async move {
            // Until the response exists, the observer is dropped with this future. An error
            // from below would drop it too, like a cancel; none comes today: tonic's routes are
            // infallible, and auth refusals are answers.
            let response = response.await?;
            let Some(observer) = observer.and_then(|o| o.on_headers(response.headers())) else {
                return Ok(response);
            };
            Ok(response.map(|body| Body::new(ObservedBody { body, observer })))
        })
    }
}

/// A response body that shows its frames to its observer and holds it until dropped.
struct ObservedBody<T> {
    body: Body,
    observer: T,
}

impl<T: Observer> http_body::Body for ObservedBody<T> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(frame) = &polled {
            this.observer.on_frame(frame);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
