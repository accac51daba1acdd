//! Loading YAML configuration with errors a person can act on.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {error}")]
    Read { file: PathBuf, error: std::io::Error },
    #[error("invalid config in {file}, at `{key}`: {message}")]
    Invalid { file: PathBuf, key: String, message: String },
}

/// Reads and deserializes a YAML file. Errors name the file, the dotted path of the offending
/// key (`.` for the document itself) and what the parser expected there.
pub fn load_yaml_file<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|error| ConfigError::Read { file: file.to_owned(), error })?;
    parse_yaml(&text, file)
}

/// Parses YAML text that came from `file` (the name is only used in errors).
pub fn parse_yaml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let mut key = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            key = err.path().to_string();
            err.into_inner()
        })
    });
    result.map_err(|err| ConfigError::Invalid {
        file: file.to_owned(),
        key: if key.is_empty() || key == "?" { ".".into() } else { key },
        message: first_line(&err.to_string()),
    })
}

/// Deserializes configuration already parsed into JSON (a section of a control-plane
/// resource); errors name `origin` and the dotted path of the offending key, as [`parse_yaml`].
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value, origin: &Path) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let key = err.path().to_string();
        ConfigError::Invalid {
            file: origin.to_owned(),
            key: if key.is_empty() || key == "?" { ".".into() } else { key },
            message: first_line(&err.into_inner().to_string()),
        }
    })
}

/// A configuration value that deserialized but makes no sense (a port range that overlaps the
/// listener, say); for checks serde cannot express.
pub fn invalid(file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { file: file.to_owned(), key: key.to_owned(), message: message.into() }
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// What a sidecar logs in to its broker with in every client's stead (MQTT's CONNECT, AMQP's
/// PLAIN login), so that the clients' own credentials never reach the broker.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        listen: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        port: u16,
    }

    fn err(text: &str) -> String {
        parse_yaml::<Outer>(text, Path::new("sidecar.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn names_file_key_and_expectation() {
        let e = err("listen: a\ninner:\n  port: 99999\n");
        assert!(e.contains("sidecar.yaml") && e.contains("`inner.port`"), "{e}");
        let e = err("listen: a\ninner:\n  prot: 1\n");
        assert!(e.contains("`inner.prot`") || e.contains("`inner`"), "{e}");
        assert!(e.contains("prot"), "{e}");
        let e = err("inner: {}\n");
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn accepts_good_config() {
        let outer: Outer = parse_yaml("listen: a\ninner: {port: 5}\n", Path::new("x")).unwrap();
        assert_eq!(outer.listen, "a");
        assert_eq!(outer.inner.port, 5);
    }
}
