//! The connection's settings, as the host passes them.

use crate::Error;
use serde::de::DeserializeOwned;

/// The connection's settings: a JSON object already checked by the host against the schema in
/// the connector's manifest. Read them into your own `#[derive(Deserialize)]` type with
/// [`Settings::parse`].
#[derive(Debug, Clone, Default)]
pub struct Settings(serde_json::Map<String, serde_json::Value>);

impl Settings {
    pub(crate) fn parse_json(text: &str) -> Result<Self, Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(Error::configuration("settings must be a JSON object")),
            Err(e) => Err(Error::configuration(format!(
                "settings are not valid JSON: {e}"
            ))),
        }
    }

    /// Reads the settings into a typed structure; an error names the offending setting.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(serde_json::Value::Object(self.0.clone()))
            .map_err(|e| Error::configuration(format!("invalid settings: {e}")))
    }

    /// One setting as text, if present and a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_str())
    }

    /// The raw JSON object.
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}
