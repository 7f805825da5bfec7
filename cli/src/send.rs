//! `terima send`: posts sample events to a running gateway, re-signed for the
//! current time with the configured secrets, the way the provider would.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use terima_core::{Clock, Provider, SystemClock};

use crate::args::SendArgs;
use crate::failure::Failure;
use crate::gateway::SampleRequest;
use crate::settings::Settings;
use crate::sign::Signer;

/// A gateway that takes longer than this to answer is reported unreachable;
/// providers give up after 10 to 30 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: SendArgs) -> Result<(), Failure> {
    let settings = Settings::load(args.env_file.as_deref())?;
    let base = args.url.trim_end_matches('/');
    base.parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme_str() == Some("http") && uri.host().is_some())
        .ok_or_else(|| Failure::Usage(format!("--url {base} is not an http:// URL")))?;
    let requests = args
        .files
        .iter()
        .map(|file| SampleRequest::read(file).map(|r| (file.display().to_string(), r)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let mut signers: Vec<(Provider, Signer)> = Vec::new();
    for (_, request) in &requests {
        if !signers.iter().any(|(p, _)| *p == request.provider) {
            signers.push((request.provider, Signer::load(request.provider, &settings)?));
        }
    }
    let client = client();
    let mut failed = 0;
    for (file, mut request) in requests {
        if let Some((_, signer)) = signers.iter().find(|(p, _)| *p == request.provider) {
            signer.sign(&mut request.headers, &request.body, SystemClock.now_unix());
        }
        let url = format!("{base}{}", request.path);
        let (status, body) = post(&client, &url, &request).await?;
        println!("{file}: {status} {body}");
        if !(200..300).contains(&status) {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Failure::SendFailed(format!(
            "{failed} event(s) were not answered 2xx"
        )));
    }
    Ok(())
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Posts one request; the error is an unreachable gateway.
pub async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    request: &SampleRequest,
) -> Result<(u16, String), Failure> {
    let mut builder = Request::post(url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let http_request = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|e| Failure::Usage(format!("cannot build a request to {url}: {e}")))?;
    let unreachable =
        |e: &dyn std::error::Error| Failure::Backend(format!("cannot reach {url}: {}", chain(e)));
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(http_request))
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An error with its causes: the client's own message ("client error
/// (Connect)") says little without them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
