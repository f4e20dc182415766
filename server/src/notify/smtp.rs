//! Handing mails to the SMTP server, with lettre over rustls: STARTTLS (required, never
//! optional: a server that does not offer it is refused), implicit TLS, or plain for a local
//! relay; PLAIN or LOGIN authentication over TLS.

use super::compose::Mail;
use super::settings::{MailConfig, TlsMode};
use anyhow::{Context, Result};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// The way out: a transport, the sender and the recipients.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port`, for logs.
    pub server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .finish()
    }
}

impl Mailer {
    /// The mailer `cfg` describes (which has a host); errors name the key at fault.
    pub fn new(cfg: &MailConfig) -> Result<Self> {
        let host = cfg.host.clone().context("mail.host is not set")?;
        let from: Mailbox = cfg
            .from
            .parse()
            .with_context(|| format!("mail.from: {:?} is not a mail address", cfg.from))?;
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .with_context(|| format!("mail.to: {t:?} is not a mail address"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(cfg.port())
            .timeout(Some(Duration::from_secs(cfg.timeout_s)));
        builder = match cfg.tls {
            TlsMode::Starttls => builder.tls(Tls::Required(tls(&host, cfg)?)),
            TlsMode::Implicit => builder.tls(Tls::Wrapper(tls(&host, cfg)?)),
            TlsMode::None => builder.tls(Tls::None),
        };
        if let (Some(user), Some(password)) = (&cfg.username, cfg.password()?) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            to,
            server: format!("{host}:{}", cfg.port()),
        })
    }

    /// Hands `mail` over; the error says why not (for the log and the outbox).
    pub async fn send(&self, kind: &str, mail: &Mail) -> Result<(), String> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(mail.body.clone())
            .map_err(|e| format!("cannot build the {kind} mail: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| idgard_model::errors::chain(&e))
    }
}

/// TLS towards `host`: the system's authorities and `mail.ca`'s.
fn tls(host: &str, cfg: &MailConfig) -> Result<TlsParameters> {
    let mut params = TlsParameters::builder(host.to_owned());
    if let Some(path) = &cfg.ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("mail.ca: cannot read {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .with_context(|| format!("mail.ca: {} holds no PEM certificate", path.display()))?;
        params = params.add_root_certificate(cert);
    }
    params
        .build_rustls()
        .context("mail: cannot set up TLS for the SMTP server")
}
