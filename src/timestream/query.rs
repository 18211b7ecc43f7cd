//! The read service's storage (`crate::read::storage::Storage`) over the Timestream Query
//! API: a query runs page by page following NextToken to the end (pages may be empty), each
//! page counted in `timestream_connector_read_requests_total`; `DESCRIBE` gives a table's
//! dimensions; SDK failures are classified here (`classify`) into `ReadError`s. Rows stay in
//! the SDK's page and are lent to the read service as borrowed cells.

use std::collections::BTreeSet;

use aws_sdk_timestreamquery::operation::query::QueryOutput;
use aws_sdk_timestreamquery::Client;

use super::error::classify;
use crate::read::error::ReadError;
use crate::read::storage::{Cursor, Described, Page, Storage};

/// Counts Query pages (the upstream `timestream_connector_read_requests_total`).
pub type PageCounter = prometheus::IntCounter;

/// One caller's query session: the client of its credential and the page counter.
#[derive(Clone)]
pub struct TimestreamStorage {
    client: Client,
    pages: PageCounter,
}

impl TimestreamStorage {
    /// Queries through `client`, counting pages in `pages`.
    pub fn new(client: Client, pages: PageCounter) -> TimestreamStorage {
        TimestreamStorage { client, pages }
    }
}

/// The pages of one query.
pub struct TimestreamCursor {
    client: Client,
    pages: PageCounter,
    sql: String,
    token: Option<String>,
    done: bool,
}

/// One page of a query, as the SDK returned it.
pub struct TimestreamPage {
    out: QueryOutput,
    columns: Vec<String>,
}

impl TimestreamPage {
    /// The page of `out` (its column names read once).
    pub fn new(out: QueryOutput) -> TimestreamPage {
        let columns = out
            .column_info()
            .iter()
            .map(|c| c.name().unwrap_or_default().to_string())
            .collect();
        TimestreamPage { out, columns }
    }
}

impl Page for TimestreamPage {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn len(&self) -> usize {
        self.out.rows().len()
    }

    fn each_row<F>(&self, mut f: F) -> Result<(), ReadError>
    where
        F: FnMut(&[Option<&str>]) -> Result<(), ReadError>,
    {
        let mut cells: Vec<Option<&str>> = Vec::with_capacity(self.columns.len());
        for r in self.out.rows() {
            cells.clear();
            cells.extend(r.data().iter().map(|d| d.scalar_value()));
            f(&cells)?;
        }
        Ok(())
    }
}

impl Cursor for TimestreamCursor {
    type Page = TimestreamPage;

    async fn next(&mut self) -> Result<Option<TimestreamPage>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let out = self
            .client
            .query()
            .query_string(&self.sql)
            .set_next_token(self.token.take())
            .send()
            .await
            .map_err(|e| ReadError::from(classify(&e)))?;
        self.pages.inc();
        match out.next_token() {
            Some(t) if !t.is_empty() => self.token = Some(t.to_string()),
            _ => self.done = true,
        }
        Ok(Some(TimestreamPage::new(out)))
    }
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Storage for TimestreamStorage {
    type Cursor = TimestreamCursor;

    fn query(&self, sql: String) -> TimestreamCursor {
        TimestreamCursor {
            client: self.client.clone(),
            pages: self.pages.clone(),
            sql,
            token: None,
            done: false,
        }
    }

    /// `DESCRIBE db.table`: the rows whose Timestream attribute type is DIMENSION, and
    /// whether a row is `measure_value::double`. Not
    /// understood (a ValidationException, or columns other than Timestream's) →
    /// [`Described::NotUnderstood`]; IAM's refusal of the action (AccessDeniedException; a
    /// policy may grant `Select` without `DescribeTable`, which AWS documents as the action
    /// of the SQL command, see GETTING_STARTED) → [`Described::Refused`]. Other failures,
    /// bad or expired keys among them, are errors: the fallback would fail the same way.
    async fn describe(&self, database: &str, table: &str) -> Result<Described, ReadError> {
        let mut cursor = self.query(format!("DESCRIBE {}.{}", ident(database), ident(table)));
        let mut dims = BTreeSet::new();
        let mut double = false;
        let described: Result<(), ReadError> = async {
            while let Some(page) = cursor.next().await? {
                let cols = page.columns();
                let find = |n: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(n));
                let (Some(name), Some(kind)) = (find("Column"), find("Timestream attribute type"))
                else {
                    return Err(ReadError::Internal("unexpected DESCRIBE columns".into()));
                };
                page.each_row(|cells| {
                    let cell = |i: usize| cells.get(i).copied().flatten();
                    match (cell(name), cell(kind)) {
                        (Some(n), Some("DIMENSION")) => {
                            dims.insert(n.to_string());
                        }
                        // By name alone (Timestream's type for it is MEASURE_VALUE): a
                        // dimension may not be named `measure_value::…`, and a wrong type
                        // string must not hide every number of a table.
                        (Some("measure_value::double"), _) => double = true,
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Ok(())
        }
        .await;
        match described {
            Ok(()) => Ok(Described::Columns {
                dimensions: dims,
                double,
            }),
            Err(ReadError::Validation(_)) | Err(ReadError::Internal(_)) => {
                Ok(Described::NotUnderstood)
            }
            Err(ReadError::AccessDenied(m)) if m.starts_with("AccessDeniedException") => {
                Ok(Described::Refused(m))
            }
            Err(e) => Err(e),
        }
    }
}
