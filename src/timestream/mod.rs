//! The AWS side: SDK clients per credential (with endpoint discovery or a fixed endpoint),
//! sending write plans as WriteRecords calls, the read service's storage over the Query API
//! (`query`), and classifying SDK failures. Knows nothing of HTTP; `http::*` turns its
//! results into statuses.

pub mod client;
pub mod error;
pub mod query;
pub mod writer;
