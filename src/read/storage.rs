//! The read service's one seam to storage: run a query and hand back its result page by
//! page, and say which dimensions a table has. `crate::timestream::query` implements it with
//! the Timestream Query API (SDK clients, NextToken pagination, the classification of SDK
//! failures); tests can implement it over anything that answers SQL.
//!
//! Rows are lent, not copied: a page keeps whatever the storage returned and shows each row
//! as borrowed cells (`Option<&str>`, `None` = NULL) in the order of the page's columns, so
//! no cell becomes a `String` on the way to the groupers.

use std::collections::BTreeSet;
use std::future::Future;

use super::error::ReadError;

/// Where the read service gets its rows and its table shapes.
pub trait Storage: Send + Sync {
    /// The pages of one query, in order.
    type Cursor: Cursor;

    /// Starts `sql`. Nothing may be sent before the cursor's first `next`.
    fn query(&self, sql: String) -> Self::Cursor;

    /// The dimension columns of `database.table` and whether it has `measure_value::double`,
    /// as the storage describes them (for Timestream: `DESCRIBE`), or why it cannot say.
    fn describe(
        &self,
        database: &str,
        table: &str,
    ) -> impl Future<Output = Result<Described, ReadError>> + Send;
}

/// The pages of one running query.
pub trait Cursor: Send {
    /// One page of rows.
    type Page: Page;

    /// The next page, `None` after the last. A page may hold no rows.
    fn next(&mut self) -> impl Future<Output = Result<Option<Self::Page>, ReadError>> + Send;
}

/// Rows of one page, with the names of their columns.
pub trait Page: Send {
    /// Column names, in cell order (the same on every page of a query).
    fn columns(&self) -> &[String];

    /// Rows on this page.
    fn len(&self) -> usize;

    /// Whether the page has no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each row's cells, in order, stopping at the first error.
    fn each_row<F>(&self, f: F) -> Result<(), ReadError>
    where
        F: FnMut(&[Option<&str>]) -> Result<(), ReadError>;
}

/// What a `describe` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// The table's dimension columns, and whether it has a `measure_value::double` column
    /// (Timestream adds it with the first double written; a table that only ever got
    /// special values or native histograms, `crate::special`, has none).
    Columns {
        dimensions: BTreeSet<String>,
        double: bool,
    },
    /// The storage does not understand the request (an older or emulated service): ask the
    /// columns of an empty `SELECT *` instead.
    NotUnderstood,
    /// Refused for this identity (an IAM policy may grant `Select` without
    /// `DescribeTable`); the reason is for the log. Asking again would be refused again.
    Refused(String),
}
