//! The actix-web app of the shop (shared with the end-to-end tests).

use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::StatusCode, web};

use wxpay_actix::Wxpay;

use crate::shop::{Reply, Shop, Shutdown};

/// Serves the shop on `listener` until `shutdown`, then finishes the
/// requests in flight.
pub async fn serve(
    shop: Arc<Shop>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let settings = shop.server;
    let server = HttpServer::new(move || {
        // wxpay's routes, their bodies read within the deadline.
        let wxpay = Wxpay::new(shop.payments.clone()).body_timeout(settings.body_timeout);
        App::new()
            .app_data(web::Data::from(shop.clone()))
            .route("/login", wxpay.clone().sign_in())
            .route("/me", web::get().to(me))
            .service(wxpay.scope("/pay"))
    })
    // Slow clients: the first request's head must be in within this
    // (answered 408), and a kept-alive connection is closed when the next
    // request has not started within it.
    .client_request_timeout(settings.header_timeout)
    .keep_alive(settings.header_timeout)
    .workers(2)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}

async fn me(shop: web::Data<Shop>, req: HttpRequest) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    respond(shop.me(auth).await)
}

fn respond((status, body): Reply) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .json(body)
}
