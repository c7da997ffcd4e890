//! The demo shop API: a couple of JSON routes in the spirit of a team's backend, instrumented
//! with axi-obs, and a load generator so a newcomer sees the numbers move.
//!
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/products` | the catalogue |
//! | `GET /api/products/{id}` | one product, 404 if unknown |
//! | `POST /api/orders` | `{"product_id": 1, "quantity": 2}`: 201, 422 when invalid, 503 when the (simulated) payment provider fails |
//! | `GET /api/recommendations` | calls the `--downstream` service's catalogue (trace context propagated), or this service's own |
//! | `GET /metrics`, `/healthz`, `/readyz`, `/version` | axi-obs-axum's operational routes |
//! | `/api/deploy/...` | with [`AppState::deploys`]: axi-obs-deploy's intake (`POST /api/deploy/events`, what `axi-deploy run --endpoint` posts to), SSE stream, history, stats and annotations, see [`deploys`] |
//!
//! Every request is observed by axi-obs-axum's `ObsLayer` (HTTP metrics, server span, request
//! id, access log).
//!
//! Business metrics: `shop_orders_total{status}`, `shop_order_value` (histogram, currency
//! units), `shop_payment_duration_seconds` (histogram).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axi_obs_axum::client::TracedClient;
use axi_obs_axum::{ObsLayer, ObsRoutes, RequestId};
use axi_obs_core::MetricsHandle;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub mod alerts;
pub mod deploys;

pub use deploys::Deploys;

/// Metric names, in one place.
pub mod names {
    /// Orders by outcome (`created`, `rejected`, `failed`).
    pub const ORDERS: &str = "shop_orders_total";
    /// Order value in currency units.
    pub const ORDER_VALUE: &str = "shop_order_value";
    /// Time spent in the payment provider.
    pub const PAYMENT_DURATION: &str = "shop_payment_duration_seconds";
}

/// The demo's telemetry settings (service name and version); the binary adds nothing else,
/// so logs, traces and metrics follow the `OTEL_*` / `AXI_LOG_*` environment.
pub fn telemetry() -> axi_obs_core::TelemetryBuilder {
    axi_obs_core::Telemetry::builder()
        .default_service_name("demo-service")
        .service_version(env!("CARGO_PKG_VERSION"))
}

/// Describes the demo's metrics (units and help text) on the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(names::ORDERS, "Orders received, by outcome");
    metrics::describe_histogram!(
        names::ORDER_VALUE,
        "Value of created orders, in currency units"
    );
    metrics::describe_histogram!(
        names::PAYMENT_DURATION,
        metrics::Unit::Seconds,
        "Time spent waiting for the payment provider"
    );
}

/// A product in the catalogue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Product {
    /// Identifier.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: u64,
}

/// An order request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewOrder {
    /// The product.
    pub product_id: u32,
    /// How many, 1..=100.
    pub quantity: u32,
}

/// A created order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    /// Identifier.
    pub id: u64,
    /// The product.
    pub product_id: u32,
    /// How many.
    pub quantity: u32,
    /// Total in cents.
    pub total_cents: u64,
}

/// Shared state of the demo.
#[derive(Clone)]
pub struct AppState {
    products: Arc<Vec<Product>>,
    next_order: Arc<AtomicU64>,
    metrics: MetricsHandle,
    downstream: Option<String>,
    client: TracedClient,
    deploys: Option<Deploys>,
}

impl AppState {
    /// State serving `/metrics` from `metrics`; `/api/recommendations` asks `downstream` (a
    /// base URL such as `http://127.0.0.1:8081`) when given.
    pub fn new(metrics: MetricsHandle, downstream: Option<String>) -> Self {
        let products = vec![
            Product {
                id: 1,
                name: "Keyboard".into(),
                price_cents: 4_999,
            },
            Product {
                id: 2,
                name: "Mouse".into(),
                price_cents: 1_999,
            },
            Product {
                id: 3,
                name: "Monitor".into(),
                price_cents: 18_999,
            },
            Product {
                id: 4,
                name: "Cable".into(),
                price_cents: 599,
            },
        ];
        Self {
            products: Arc::new(products),
            next_order: Arc::new(AtomicU64::new(1)),
            metrics,
            downstream,
            client: TracedClient::new(reqwest::Client::new()),
            deploys: None,
        }
    }

    /// Also serves the deploy routes of `deploys`. Defaults to none.
    pub fn deploys(mut self, deploys: Deploys) -> Self {
        self.deploys = Some(deploys);
        self
    }
}

/// The demo router: the API behind `ObsLayer`, plus the operational routes.
pub fn app(state: AppState) -> Router {
    app_with(state, Some(ObsLayer::new()))
}

/// The demo router with a given layer, or none (for measuring what the layer costs).
pub fn app_with(state: AppState, layer: Option<ObsLayer>) -> Router {
    app_wrapping(state, |api| match layer {
        Some(layer) => api.layer(layer),
        None => api,
    })
}

/// The demo router (API, operational and deploy routes) passed through `wrap` (which adds a
/// layer, say) once every route is in: a router merged after a layer would bring its own,
/// unwrapped 404, and unmatched requests would go unobserved. The load test in `benches/`
/// uses it to serve the same routes behind peer crates' layers.
pub fn app_wrapping(state: AppState, wrap: impl FnOnce(Router) -> Router) -> Router {
    let api = Router::new()
        .route("/api/products", get(list_products))
        .route("/api/products/{id}", get(get_product))
        .route("/api/orders", post(create_order))
        .route("/api/recommendations", get(recommendations))
        .with_state(state.clone());
    let mut routes = ObsRoutes::new()
        .metrics(state.metrics.clone())
        .version(axi_obs_axum::version_info!())
        .readiness_check("catalogue", Duration::from_millis(500), {
            let products = state.products.clone();
            move || {
                let n = products.len();
                async move {
                    if n > 0 {
                        Ok(())
                    } else {
                        Err("empty catalogue".to_owned())
                    }
                }
            }
        });
    if let Some(base) = state.downstream.clone() {
        let client = state.client.clone();
        routes = routes.readiness_check("downstream", Duration::from_secs(1), move || {
            let (client, url) = (client.clone(), format!("{base}/healthz"));
            async move {
                match client.send(client.inner().get(url)).await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("downstream answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        });
    }
    let app = api.merge(routes.into_router());
    wrap(match &state.deploys {
        Some(d) => app.merge(d.router()),
        None => app,
    })
}

/// Recommends two products from the downstream catalogue (or our own).
#[tracing::instrument(skip_all)]
async fn recommendations(
    State(state): State<AppState>,
) -> Result<Json<Vec<Product>>, (StatusCode, String)> {
    let Some(base) = &state.downstream else {
        return Ok(Json(state.products.iter().take(2).cloned().collect()));
    };
    let res = state
        .client
        .send(state.client.inner().get(format!("{base}/api/products")))
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("downstream: {e}")))?;
    let products: Vec<Product> = res
        .json()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("downstream body: {e}")))?;
    tracing::info!(downstream = %base, received = products.len(), "recommendations from downstream");
    Ok(Json(products.into_iter().take(2).collect()))
}

#[tracing::instrument(skip_all)]
async fn list_products(State(state): State<AppState>) -> Json<Vec<Product>> {
    Json(state.products.to_vec())
}

#[tracing::instrument(skip(state))]
async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<u32>,
) -> Result<Json<Product>, StatusCode> {
    match state.products.iter().find(|p| p.id == id) {
        Some(p) => Ok(Json(p.clone())),
        None => {
            tracing::info!(product_id = id, "unknown product");
            Err(StatusCode::NOT_FOUND)
        }
    }
}

#[tracing::instrument(skip_all, fields(order_id = tracing::field::Empty))]
async fn create_order(
    State(state): State<AppState>,
    // `None` only when the demo runs without the layer (`--no-obs`).
    request_id: Option<RequestId>,
    Json(req): Json<NewOrder>,
) -> Result<(StatusCode, Json<Order>), (StatusCode, Json<serde_json::Value>)> {
    // Error bodies name the request id: what a user quotes to support, and what finds the
    // request's log lines and trace.
    let error = |reason: &str| {
        Json(serde_json::json!({
            "error": reason,
            "request_id": request_id.as_ref().map(RequestId::as_str),
        }))
    };
    let reject = |reason: &str| {
        metrics::counter!(names::ORDERS, "status" => "rejected").increment(1);
        tracing::warn!(
            product_id = req.product_id,
            quantity = req.quantity,
            reason,
            "order rejected"
        );
        (StatusCode::UNPROCESSABLE_ENTITY, error(reason))
    };
    let Some(product) = state.products.iter().find(|p| p.id == req.product_id) else {
        return Err(reject("unknown product"));
    };
    if !(1..=100).contains(&req.quantity) {
        return Err(reject("quantity must be within 1..=100"));
    }
    let id = state.next_order.fetch_add(1, Ordering::Relaxed);
    tracing::Span::current().record("order_id", id);

    // The simulated payment provider: 5-60 ms, fails for every 50th order.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(5 + (id * 7919) % 56)).await;
    metrics::histogram!(names::PAYMENT_DURATION).record(started.elapsed().as_secs_f64());
    if id % 50 == 0 {
        metrics::counter!(names::ORDERS, "status" => "failed").increment(1);
        tracing::error!(order_id = id, "payment provider unavailable");
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            error("payment provider unavailable"),
        ));
    }

    let total_cents = product.price_cents * u64::from(req.quantity);
    metrics::counter!(names::ORDERS, "status" => "created").increment(1);
    metrics::histogram!(names::ORDER_VALUE).record(total_cents as f64 / 100.0);
    tracing::info!(order_id = id, total_cents, product = %product.name, "order created");
    Ok((
        StatusCode::CREATED,
        Json(Order {
            id,
            product_id: req.product_id,
            quantity: req.quantity,
            total_cents,
        }),
    ))
}

/// Sends a mix of requests to `base` (e.g. `http://127.0.0.1:8080`) at about `rps` requests
/// per second until the returned future is dropped.
pub async fn generate_load(base: String, rps: u32) {
    let client = reqwest::Client::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let client = client.clone();
        let base = base.clone();
        // Each request on its own task so a slow one does not hold the rate back.
        tokio::spawn(async move {
            let result = match n % 10 {
                0..=2 => client.get(format!("{base}/api/products")).send().await,
                3 => {
                    client
                        .get(format!("{base}/api/recommendations"))
                        .send()
                        .await
                }
                4..=5 => {
                    client
                        .get(format!("{base}/api/products/{}", 1 + n % 6))
                        .send()
                        .await
                }
                _ => {
                    client
                        .post(format!("{base}/api/orders"))
                        .json(&NewOrder {
                            product_id: 1 + (n % 5) as u32,
                            quantity: if n.is_multiple_of(23) {
                                0
                            } else {
                                1 + (n % 3) as u32
                            },
                        })
                        .send()
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "load request failed");
            }
        });
    }
}
