//! The browser lobby page served at `/`: plain JavaScript, no build step. The compact-code
//! codec (`static/compact-code.js`, also used by the interop tests) is inlined where the page
//! has its `<!-- compact-code.js -->` marker, so the page stays one request.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;

const TEMPLATE: &str = include_str!("../static/lobby.html");
const COMPACT_JS: &str = include_str!("../static/compact-code.js");
const MARKER: &str = "<!-- compact-code.js -->";

static PAGE: LazyLock<String> =
    LazyLock::new(|| TEMPLATE.replacen(MARKER, &format!("<script>\n{COMPACT_JS}</script>"), 1));

pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_code_codec_once() {
        assert!(TEMPLATE.contains(MARKER));
        assert!(!PAGE.contains(MARKER));
        assert_eq!(PAGE.matches("globalThis.PeerlinkCompact =").count(), 1);
        // The codec runs before the page's own script.
        let codec = PAGE
            .find("globalThis.PeerlinkCompact")
            .unwrap_or(usize::MAX);
        let lobby = PAGE.find("const LABEL").unwrap_or(0);
        assert!(codec < lobby);
    }
}
