//! What the buffer holds: an [`Item`], one unit of telemetry that came in through an [`Input`].
//!
//! Today every item is an X-Ray segment document received over UDP, kept byte for byte
//! ([`Document`]). The OpenTelemetry inputs will add span items; each kind says what it costs
//! against the memory budget ([`Item::cost`]) and which input it came from ([`Item::input`]),
//! so the buffer's memory rule and the per-input accounting need no change when a kind is
//! added. A sink matches on the kind it was given, so a new kind cannot be sent anywhere by
//! accident: the compiler lists every place that must decide what to do with it.
//!
//! A leaf: it knows the item types and nothing of the stages.

use crate::document::Document;

/// Where an item came in. Stable names: they are `/daemon/stats` keys (`inputs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// X-Ray segment documents in UDP datagrams (`-b`, port 2000).
    Udp,
}

impl Input {
    /// Every input, in the order stats list them.
    pub const ALL: [Input; 1] = [Input::Udp];

    /// The stable name used in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Udp => "udp",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One unit the daemon relays.
#[derive(Clone, Debug)]
pub enum Item {
    /// An X-Ray segment or subsegment document, byte for byte as received.
    XrayDocument(Document),
}

impl Item {
    /// Bytes this item costs against the memory budget (its allocation and bookkeeping).
    pub fn cost(&self) -> usize {
        match self {
            Item::XrayDocument(doc) => doc.cost(),
        }
    }

    /// The input it came in through.
    pub fn input(&self) -> Input {
        match self {
            Item::XrayDocument(_) => Input::Udp,
        }
    }

    /// The X-Ray document, when the item is one.
    pub fn as_document(&self) -> Option<&Document> {
        match self {
            Item::XrayDocument(doc) => Some(doc),
        }
    }
}

impl Item {
    /// `segment ID of trace TRACE_ID` for a log line (`(no id)` and `(no trace id)` where the
    /// document has none). Reads the document again: for logs, never on the hot path, never the
    /// body.
    pub fn log_name(&self) -> String {
        match self {
            Item::XrayDocument(doc) => {
                let ids = doc.ids();
                format!(
                    "segment {} of trace {}",
                    ids.id.as_deref().unwrap_or("(no id)"),
                    ids.trace_id.as_deref().unwrap_or("(no trace id)")
                )
            }
        }
    }
}

impl From<Document> for Item {
    fn from(doc: Document) -> Self {
        Item::XrayDocument(doc)
    }
}
