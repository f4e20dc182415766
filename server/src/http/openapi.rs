//! The API's OpenAPI document, served at `/api/v1/openapi.json`.
//!
//! It is generated from the code when the router is built: each handler carries its
//! `#[utoipa::path]` (method, path, body, success answer), the router collects them
//! (`utoipa_axum::routes!`), and the protocol's types give the schemas. What every operation
//! shares is added here, once: the error answer (`default`: `{ "error": { "code", "message" } }`),
//! who may call it (an administrator's token, an agent's access token, or no one in particular),
//! and the path parameters a handler did not describe (strings).

use idgard_protocol::{ApiError, ErrorBody, ErrorCode};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// Bytes as they are, in a body: an upload's chunk, a package's bundle.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// The security scheme of administrators' tokens.
const ADMIN: &str = "admin_token";
/// The security scheme of agents' access tokens.
const AGENT: &str = "agent_token";

/// The document before the routes are added: what the API is, its schemes and shared schemas.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("idgard server API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The idgard server's API: administrators' endpoints (`/api/v1/...`, an \
                     administrator token) and agents' endpoints (`/api/v1/agent/...`, an agent's \
                     access token from `/api/v1/agent/token`). Every error answers with \
                     `{ \"error\": { \"code\", \"message\" } }`; callers decide on the stable \
                     `code`. docs/protocol.md describes states, leases and timeouts.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, scheme) in [
        (
            ADMIN,
            "an administrator token (`idgard-server admin-token`)",
        ),
        (
            AGENT,
            "an agent's access token (`POST /api/v1/agent/token`)",
        ),
    ] {
        components.add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(scheme))
                    .build(),
            ),
        );
    }
    components
        .schemas
        .insert(ErrorBody::name().into(), ErrorBody::schema());
    components
        .schemas
        .insert(ApiError::name().into(), ApiError::schema());
    components
        .schemas
        .insert(ErrorCode::name().into(), ErrorCode::schema());
    doc
}

/// Adds what every operation shares (see the module's description).
pub fn finish(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let scheme = scheme_of(path);
        let template: Vec<String> = template_params(path);
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete(op, scheme, &template);
        }
    }
}

fn complete(op: &mut Operation, scheme: Option<&str>, template: &[String]) {
    // Every answer needs a description; a handler's success says what it holds already.
    for answer in op.responses.responses.values_mut() {
        if let RefOr::T(a) = answer
            && a.description.is_empty()
        {
            a.description = "Done.".into();
        }
    }
    op.responses
        .responses
        .entry("default".into())
        .or_insert_with(error_answer);
    if op.security.is_none() {
        op.security = Some(match scheme {
            Some(s) => vec![SecurityRequirement::new::<_, _, String>(s, [])],
            // Open to anyone: an empty requirement.
            None => vec![SecurityRequirement::default()],
        });
    }
    let params = op.parameters.get_or_insert_with(Vec::new);
    for name in template {
        let described = params.iter().any(|p| match p {
            RefOr::T(p) => p.name == *name && p.parameter_in == ParameterIn::Path,
            RefOr::Ref(_) => false,
        });
        if !described {
            params.push(RefOr::T(path_param(name)));
        }
    }
}

fn path_param(name: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(String::schema()))
        .build()
}

/// The error answer every operation may give.
fn error_answer() -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(
                "An error: `code` is stable (the HTTP status follows from it), `message` is \
                 for people.",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build(),
    )
}

/// Who may call an operation at `path`: `None` for the endpoints an agent calls before it has
/// an access token.
fn scheme_of(path: &str) -> Option<&'static str> {
    match path {
        "/api/v1/enrol" | "/api/v1/agent/token" => None,
        p if p.starts_with("/api/v1/agent/") => Some(AGENT),
        _ => Some(ADMIN),
    }
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parameters_are_found() {
        assert_eq!(
            template_params("/api/v1/connections/{name}/entries/{key}"),
            ["name", "key"]
        );
        assert!(template_params("/api/v1/agents").is_empty());
    }

    #[test]
    fn agents_and_administrators_use_their_own_tokens() {
        assert_eq!(scheme_of("/api/v1/enrol"), None);
        assert_eq!(scheme_of("/api/v1/agent/token"), None);
        assert_eq!(scheme_of("/api/v1/agent/poll"), Some(AGENT));
        assert_eq!(scheme_of("/api/v1/agents"), Some(ADMIN));
    }
}
