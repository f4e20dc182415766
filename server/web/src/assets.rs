//! The stylesheet and script, embedded in the binary (no CDN, nothing fetched at run time) and
//! served as `/assets/<name>.<hash>.<ext>`: the name changes with the content, so browsers may
//! keep them for good.

use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its plain name (`ui.css`).
    pub name: &'static str,
    /// Its address (`/assets/ui.3f2a9c1d.css`).
    pub url: String,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/ui.js"),
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, bytes)| {
            let hash = hex::encode(&Sha256::digest(bytes)[..6]);
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            Asset {
                name,
                url: format!("/assets/{stem}.{hash}.{ext}"),
                content_type,
                bytes,
            }
        })
        .collect()
});

/// The address of the asset named `name`.
pub fn url(name: &str) -> &'static str {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.url.as_str())
        .unwrap_or("/assets/missing")
}

/// The asset served at `/assets/<file>`, if `file` is a current hashed name.
pub fn find(file: &str) -> Option<&'static Asset> {
    ASSETS
        .iter()
        .find(|a| a.url.strip_prefix("/assets/") == Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_named_by_their_content() {
        let css = url("ui.css");
        assert!(
            css.starts_with("/assets/ui.") && css.ends_with(".css"),
            "{css}"
        );
        let file = css.strip_prefix("/assets/").unwrap();
        assert_eq!(find(file).unwrap().name, "ui.css");
        assert!(find("ui.css").is_none(), "only hashed names are served");
    }
}
