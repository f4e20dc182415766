//! A connector that sends whatever HTTP requests its settings give, for the host's tests: the
//! host, not the connector, decides which may go out and with which credentials, and this guest
//! shows what came back (one entry per request: its status, or the error's kind and message).

use idgard_sdk::http::Request;
use idgard_sdk::{
    Connector, ConnectorInfo, Cursor, Error, ExportRequest, Exporter, Operation, Settings,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Probe {
    requests: Vec<String>,
    header: Option<String>,
    body: Option<String>,
    secret: Option<String>,
}

pub struct HttpProbe;

impl Connector for HttpProbe {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("httpprobe", "0.1.0", &["request"])
            .with_operations(&[Operation::ExportFull])
    }

    fn export(
        settings: &Settings,
        _request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let probe: Probe = settings.parse()?;
        if let Some(name) = &probe.secret {
            let found = if idgard_sdk::secret(name).is_some() {
                "found"
            } else {
                "none"
            };
            idgard_sdk::log::info(&format!("secret: {found}"));
        }
        for (i, line) in probe.requests.iter().enumerate() {
            let (method, url) = line
                .split_once(' ')
                .ok_or_else(|| Error::configuration(format!("`{line}` is not `METHOD URL`")))?;
            let mut request = Request::new(method, url);
            if let Some((name, value)) = probe.header.as_deref().and_then(|h| h.split_once(':')) {
                request = request.header(name.trim(), value.trim());
            }
            if let Some(body) = &probe.body {
                request = request.body("text/plain", body.as_bytes());
            }
            let key = format!("req-{}", i + 1);
            let mut w = out.upsert("request", &key);
            match request.send() {
                Ok(answer) => {
                    w.attr("status", &answer.status().to_string());
                    let body = String::from_utf8_lossy(answer.bytes());
                    w.attr("body", &body.chars().take(300).collect::<String>());
                    w.attr("bytes", &answer.bytes().len().to_string());
                    if let Some(l) = answer.header("location") {
                        w.attr("location", l);
                    }
                }
                Err(e) => {
                    let kind = format!("{:?}", e.kind);
                    w.attr("error_kind", kind.trim_start_matches("ErrorKind::"));
                    w.attr("error", &e.message);
                }
            }
        }
        Ok(None)
    }
}

idgard_sdk::export!(HttpProbe);
