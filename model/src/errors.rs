//! Errors on one line, for logs and messages people read.

/// `e` and its causes on one line, each cause once (clients such as reqwest keep the real
/// reason, a TLS refusal say, in their sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_follow_once() {
        let e = E(
            "request failed",
            Some(Box::new(E(
                "certificate not trusted",
                Some(Box::new(E("not trusted", None))),
            ))),
        );
        assert_eq!(super::chain(&e), "request failed: certificate not trusted");
    }
}
