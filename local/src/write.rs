//! WriteRecords request parsing and per-record validation (table-independent rules).
//! Table-dependent rules (retention window, dimensions per table, versions) live in the store.

use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DimensionIn {
    pub name: Option<String>,
    pub value: Option<String>,
    pub dimension_value_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeasureValueIn {
    pub name: Option<String>,
    pub value: Option<String>,
    #[serde(rename = "Type")]
    pub ty: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordIn {
    pub dimensions: Option<Vec<DimensionIn>>,
    pub measure_name: Option<String>,
    pub measure_value: Option<String>,
    pub measure_value_type: Option<String>,
    pub time: Option<String>,
    pub time_unit: Option<String>,
    pub version: Option<i64>,
    pub measure_values: Option<Vec<MeasureValueIn>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WriteRecordsIn {
    pub database_name: Option<String>,
    pub table_name: Option<String>,
    pub common_attributes: Option<RecordIn>,
    pub records: Option<Vec<RecordIn>>,
}

/// Scalar measure types storable in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MType {
    Double,
    Bigint,
    Varchar,
    Boolean,
    Timestamp,
}

impl MType {
    pub fn parse(s: &str) -> Option<MType> {
        Some(match s {
            "DOUBLE" => MType::Double,
            "BIGINT" => MType::Bigint,
            "VARCHAR" => MType::Varchar,
            "BOOLEAN" => MType::Boolean,
            "TIMESTAMP" => MType::Timestamp,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MType::Double => "DOUBLE",
            MType::Bigint => "BIGINT",
            MType::Varchar => "VARCHAR",
            MType::Boolean => "BOOLEAN",
            MType::Timestamp => "TIMESTAMP",
        }
    }
    pub fn lower(self) -> &'static str {
        match self {
            MType::Double => "double",
            MType::Bigint => "bigint",
            MType::Varchar => "varchar",
            MType::Boolean => "boolean",
            MType::Timestamp => "timestamp",
        }
    }
    /// SQLite column declaration. DOUBLE has no declared type on purpose: REAL affinity would
    /// store integral floats as integers and lose -0.0 (see the SQL contract).
    pub fn sql_decl(self) -> &'static str {
        match self {
            MType::Double => "",
            MType::Bigint | MType::Boolean | MType::Timestamp => "INTEGER",
            MType::Varchar => "TEXT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SqlVal {
    Real(f64),
    Int(i64),
    Text(String),
}

impl SqlVal {
    pub fn to_sql(&self) -> rusqlite::types::Value {
        match self {
            SqlVal::Real(f) => rusqlite::types::Value::Real(*f),
            SqlVal::Int(i) => rusqlite::types::Value::Integer(*i),
            SqlVal::Text(s) => rusqlite::types::Value::Text(s.clone()),
        }
    }
    /// Identity comparison as stored (doubles by bits so -0.0 differs from 0.0).
    pub fn same_as(&self, v: &rusqlite::types::Value) -> bool {
        use rusqlite::types::Value as V;
        match (self, v) {
            (SqlVal::Real(a), V::Real(b)) => a.to_bits() == b.to_bits(),
            (SqlVal::Int(a), V::Integer(b)) => a == b,
            (SqlVal::Text(a), V::Text(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MValue {
    /// Column name in the table (`measure_value::double` or the multi-measure attribute name).
    pub name: String,
    pub ty: MType,
    pub val: SqlVal,
}

#[derive(Debug, Clone)]
pub struct NormRecord {
    /// Dimensions in request order (CommonAttributes' first).
    pub dims: Vec<(String, String)>,
    pub measure_name: String,
    pub time_ns: i64,
    pub version: i64,
    pub multi: bool,
    pub values: Vec<MValue>,
}

pub const MAX_RECORDS: usize = 100;
pub const MAX_DIM_NAME: usize = 60;
pub const MAX_MEASURE_NAME: usize = 256;
pub const MAX_VALUE: usize = 2048;
pub const MAX_RECORD_SIZE: usize = 2048;
pub const MAX_MULTI_MEASURES: usize = 256;

/// Column names Timestream reserves for itself (compared case-insensitively, like SQL identifiers).
pub fn is_reserved_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l == "time"
        || l.starts_with("measure_value")
        || l.starts_with("measure_name")
        || l.starts_with("ts_")
}

fn v(msg: String) -> ApiError {
    ApiError::validation(msg)
}

/// Parses a measure value of the given type. `unit_ns` converts TIMESTAMP values.
fn parse_value(ty: MType, s: &str, unit_ns: i64) -> Result<SqlVal, String> {
    match ty {
        MType::Double => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(SqlVal::Real(f)),
            _ => Err(format!(
                "Invalid measure value '{s}' for measure value type DOUBLE."
            )),
        },
        MType::Bigint => s
            .trim()
            .parse::<i64>()
            .map(SqlVal::Int)
            .map_err(|_| format!("Invalid measure value '{s}' for measure value type BIGINT.")),
        MType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(SqlVal::Int(1)),
            "false" => Ok(SqlVal::Int(0)),
            _ => Err(format!(
                "Invalid measure value '{s}' for measure value type BOOLEAN."
            )),
        },
        MType::Varchar => Ok(SqlVal::Text(s.to_string())),
        MType::Timestamp => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|t| t.checked_mul(unit_ns))
            .filter(|t| *t >= 0)
            .map(SqlVal::Int)
            .ok_or_else(|| {
                format!("Invalid measure value '{s}' for measure value type TIMESTAMP.")
            }),
    }
}

/// Parses and validates a WriteRecords body. Whole-request problems (malformed input) give
/// `Err(ValidationException)`; per-record limit violations give `Err(reason)` in the list.
pub fn parse_records(req: &WriteRecordsIn) -> Result<Vec<Result<NormRecord, String>>, ApiError> {
    let records = match &req.records {
        None => {
            return Err(v(
                "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null".into(),
            ))
        }
        Some(r) if r.is_empty() => {
            return Err(v("1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1".into()))
        }
        Some(r) if r.len() > MAX_RECORDS => {
            return Err(v(format!("1 validation error detected: Value of length {} at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORDS}", r.len())))
        }
        Some(r) => r,
    };
    let common = req.common_attributes.clone().unwrap_or_default();
    if let Some(vers) = common.version {
        if vers < 1 {
            return Err(v(format!("1 validation error detected: Value '{vers}' at 'commonAttributes.version' failed to satisfy constraint: Member must have value greater than or equal to 1")));
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        out.push(normalize(i, &common, r)?);
    }
    Ok(out)
}

fn check_dims(path: &str, dims: &[DimensionIn]) -> Result<(), ApiError> {
    for (j, d) in dims.iter().enumerate() {
        let name = d.name.as_deref().unwrap_or("");
        if d.name.is_none() {
            return Err(v(format!("1 validation error detected: Value null at '{path}.dimensions.{}.member.name' failed to satisfy constraint: Member must not be null", j + 1)));
        }
        if name.is_empty() {
            return Err(v(format!(
                "Invalid dimension name at '{path}.dimensions.{}': the name must not be empty.",
                j + 1
            )));
        }
        if d.value.is_none() {
            return Err(v(format!("1 validation error detected: Value null at '{path}.dimensions.{}.member.value' failed to satisfy constraint: Member must not be null", j + 1)));
        }
        if d.value.as_deref() == Some("") {
            return Err(v(format!(
                "Dimension '{name}' has an empty value; dimension values must not be empty."
            )));
        }
        if let Some(t) = &d.dimension_value_type {
            if t != "VARCHAR" {
                return Err(v(format!("1 validation error detected: Value '{t}' at '{path}.dimensions.{}.member.dimensionValueType' failed to satisfy constraint: Member must satisfy enum value set: [VARCHAR]", j + 1)));
            }
        }
        if is_reserved_name(name) {
            return Err(v(format!(
                "Dimension name '{name}' is a reserved name (time, measure_value*, measure_name*, ts_*) and cannot be used."
            )));
        }
    }
    Ok(())
}

/// Validates record `i` (0-based) and fills in what it leaves to CommonAttributes.
///
/// Two kinds of failure, as in Timestream: a malformed record fails the whole request
/// (`Err(ValidationException)`); a well-formed record that breaks a size quota is rejected alone
/// (`Ok(Err(reason))`, reported in RejectedRecords) with the first quota it breaks.
fn normalize(
    i: usize,
    common: &RecordIn,
    r: &RecordIn,
) -> Result<Result<NormRecord, String>, ApiError> {
    let path = format!("records.{}.member", i + 1);
    let dims = merge_dimensions(i, &path, common, r)?;
    let attrs = Attributes::merge(i, &path, common, r)?;

    let mut quotas = Quotas::default();
    let mut size = 8 + attrs.measure_name.len();
    for (n, val) in &dims {
        size += n.len() + val.len();
        quotas.note(n.len() > MAX_DIM_NAME, || {
            format!("Dimension name '{n}' exceeds the maximum length of {MAX_DIM_NAME} bytes.")
        });
        quotas.note(val.len() > MAX_VALUE, || {
            format!("Value of dimension '{n}' exceeds the maximum length of {MAX_VALUE} bytes.")
        });
    }
    quotas.note(attrs.measure_name.len() > MAX_MEASURE_NAME, || {
        format!("Measure name exceeds the maximum length of {MAX_MEASURE_NAME} bytes.")
    });
    let (values, values_size) = match attrs.scalar {
        None => multi_measure_values(i, &path, &attrs, &dims, &mut quotas)?,
        Some(ty) => single_measure_value(i, ty, &attrs, &mut quotas)?,
    };
    size += values_size;
    quotas.note(size > MAX_RECORD_SIZE, || {
        format!(
            "Record size {size} bytes exceeds the maximum record size of {MAX_RECORD_SIZE} bytes."
        )
    });
    if let Some(reason) = quotas.first_broken {
        return Ok(Err(reason));
    }
    Ok(Ok(NormRecord {
        dims,
        measure_name: attrs.measure_name,
        time_ns: attrs.time_ns,
        version: attrs.version,
        multi: attrs.scalar.is_none(),
        values,
    }))
}

/// The first size quota a record breaks; the record is rejected with this reason only.
#[derive(Default)]
struct Quotas {
    first_broken: Option<String>,
}

impl Quotas {
    fn note(&mut self, broken: bool, reason: impl FnOnce() -> String) {
        if broken && self.first_broken.is_none() {
            self.first_broken = Some(reason());
        }
    }
}

/// CommonAttributes' dimensions followed by the record's, after checking both lists. A name
/// may appear once in all: a record cannot override a common dimension.
fn merge_dimensions(
    i: usize,
    path: &str,
    common: &RecordIn,
    r: &RecordIn,
) -> Result<Vec<(String, String)>, ApiError> {
    let cdims = common.dimensions.as_deref().unwrap_or(&[]);
    let rdims = r.dimensions.as_deref().unwrap_or(&[]);
    check_dims("commonAttributes", cdims)?;
    check_dims(path, rdims)?;
    let mut dims: Vec<(String, String)> = Vec::with_capacity(cdims.len() + rdims.len());
    for d in cdims.iter().chain(rdims) {
        let name = d.name.clone().unwrap_or_default();
        if dims.iter().any(|(n, _)| *n == name) {
            let common_has = cdims.iter().any(|c| c.name.as_deref() == Some(&name));
            let rec_has = rdims.iter().any(|c| c.name.as_deref() == Some(&name));
            return Err(v(if common_has && rec_has {
                format!("Dimension '{name}' is specified in both CommonAttributes and record {i}; dimensions may not overlap.")
            } else {
                format!("Duplicate dimension name '{name}' in record {i}.")
            }));
        }
        dims.push((name, d.value.clone().unwrap_or_default()));
    }
    Ok(dims)
}

/// A record's attributes other than dimensions, each taken from the record or else from
/// CommonAttributes, then validated.
struct Attributes<'a> {
    measure_name: String,
    /// The measure value type; `None` for MULTI.
    scalar: Option<MType>,
    /// Nanoseconds per unit of `Time` (and of TIMESTAMP measure values).
    unit_ns: i64,
    time_ns: i64,
    version: i64,
    measure_value: Option<&'a String>,
    measure_values: Option<&'a Vec<MeasureValueIn>>,
}

impl<'a> Attributes<'a> {
    fn merge(
        i: usize,
        path: &str,
        common: &'a RecordIn,
        r: &'a RecordIn,
    ) -> Result<Self, ApiError> {
        let measure_name = r
            .measure_name
            .clone()
            .or_else(|| common.measure_name.clone())
            .ok_or_else(|| v(format!("Record {i} has no MeasureName.")))?;
        if measure_name.is_empty() {
            return Err(v(format!("Record {i} has an empty MeasureName.")));
        }
        if is_reserved_name(&measure_name) {
            return Err(v(format!(
                "Measure name '{measure_name}' is a reserved name (time, measure_value*, measure_name*, ts_*) and cannot be used."
            )));
        }
        let mvt = r
            .measure_value_type
            .clone()
            .or_else(|| common.measure_value_type.clone())
            .unwrap_or_else(|| "DOUBLE".into());
        let scalar = if mvt == "MULTI" {
            None
        } else {
            Some(MType::parse(&mvt).ok_or_else(|| v(format!("1 validation error detected: Value '{mvt}' at '{path}.measureValueType' failed to satisfy constraint: Member must satisfy enum value set: [DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP, MULTI]")))?)
        };
        let unit = r
            .time_unit
            .clone()
            .or_else(|| common.time_unit.clone())
            .unwrap_or_else(|| "MILLISECONDS".into());
        let unit_ns: i64 = match unit.as_str() {
            "MILLISECONDS" => 1_000_000,
            "SECONDS" => 1_000_000_000,
            "MICROSECONDS" => 1_000,
            "NANOSECONDS" => 1,
            _ => return Err(v(format!("1 validation error detected: Value '{unit}' at '{path}.timeUnit' failed to satisfy constraint: Member must satisfy enum value set: [MILLISECONDS, SECONDS, MICROSECONDS, NANOSECONDS]"))),
        };
        let time = r
            .time
            .clone()
            .or_else(|| common.time.clone())
            .ok_or_else(|| v(format!("Record {i} has no Time.")))?;
        let time_ns = time
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|t| t.checked_mul(unit_ns))
            .filter(|t| *t >= 0)
            .ok_or_else(|| {
                v(format!(
                    "Invalid time '{time}' for time unit {unit} in record {i}."
                ))
            })?;
        let version = r.version.or(common.version).unwrap_or(1);
        if version < 1 {
            return Err(v(format!("1 validation error detected: Value '{version}' at '{path}.version' failed to satisfy constraint: Member must have value greater than or equal to 1")));
        }
        Ok(Attributes {
            measure_name,
            scalar,
            unit_ns,
            time_ns,
            version,
            measure_value: r.measure_value.as_ref().or(common.measure_value.as_ref()),
            measure_values: r.measure_values.as_ref().or(common.measure_values.as_ref()),
        })
    }
}

/// The measures of a MULTI record, one column each, and the bytes they count towards the
/// record size (name and value each).
fn multi_measure_values(
    i: usize,
    path: &str,
    attrs: &Attributes,
    dims: &[(String, String)],
    quotas: &mut Quotas,
) -> Result<(Vec<MValue>, usize), ApiError> {
    if attrs.measure_value.is_some() {
        return Err(v(format!(
            "Record {i}: MeasureValue cannot be used with MeasureValueType MULTI; use MeasureValues."
        )));
    }
    let mvs = match attrs.measure_values {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(v(format!(
                "Record {i}: MeasureValues must be provided for MeasureValueType MULTI."
            )))
        }
    };
    quotas.note(mvs.len() > MAX_MULTI_MEASURES, || {
        format!("The number of measures in a multi-measure record exceeds {MAX_MULTI_MEASURES}.")
    });
    let mut values: Vec<MValue> = Vec::new();
    let mut size = 0;
    for (j, m) in mvs.iter().enumerate() {
        let (Some(name), Some(value), Some(ty)) = (&m.name, &m.value, &m.ty) else {
            return Err(v(format!("1 validation error detected: Value null at '{path}.measureValues.{}.member' failed to satisfy constraint: Name, Value and Type must not be null", j + 1)));
        };
        let ty = MType::parse(ty).ok_or_else(|| v(format!("1 validation error detected: Value '{ty}' at '{path}.measureValues.{}.member.type' failed to satisfy constraint: Member must satisfy enum value set: [DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP]", j + 1)))?;
        if name.is_empty() {
            return Err(v(format!(
                "Record {i}: measure name in MeasureValues must not be empty."
            )));
        }
        if is_reserved_name(name) {
            return Err(v(format!(
                "Measure name '{name}' is a reserved name (time, measure_value*, measure_name*, ts_*) and cannot be used."
            )));
        }
        if values.iter().any(|x| x.name == *name) {
            return Err(v(format!(
                "Record {i}: duplicate measure name '{name}' in MeasureValues."
            )));
        }
        if dims.iter().any(|(n, _)| n == name) {
            return Err(v(format!(
                "Record {i}: measure name '{name}' is also used as a dimension name."
            )));
        }
        quotas.note(name.len() > MAX_MEASURE_NAME, || {
            format!("Measure name '{name}' exceeds the maximum length of {MAX_MEASURE_NAME} bytes.")
        });
        quotas.note(value.len() > MAX_VALUE, || {
            format!("Measure value exceeds the maximum length of {MAX_VALUE} bytes.")
        });
        let val = parse_value(ty, value, attrs.unit_ns).map_err(v)?;
        size += name.len() + value_size(ty, value);
        values.push(MValue {
            name: name.clone(),
            ty,
            val,
        });
    }
    Ok((values, size))
}

/// The one measure of a single-measure record, stored in the `measure_value::<type>` column,
/// and the bytes it counts towards the record size (the value only).
fn single_measure_value(
    i: usize,
    ty: MType,
    attrs: &Attributes,
    quotas: &mut Quotas,
) -> Result<(Vec<MValue>, usize), ApiError> {
    if attrs.measure_values.is_some_and(|m| !m.is_empty()) {
        return Err(v(format!(
            "Record {i}: MeasureValues can only be used with MeasureValueType MULTI."
        )));
    }
    let value = attrs
        .measure_value
        .ok_or_else(|| v(format!("Record {i} has no MeasureValue.")))?;
    if value.is_empty() {
        return Err(v(format!("Record {i} has an empty MeasureValue.")));
    }
    quotas.note(value.len() > MAX_VALUE, || {
        format!("Measure value exceeds the maximum length of {MAX_VALUE} bytes.")
    });
    let val = parse_value(ty, value, attrs.unit_ns).map_err(v)?;
    let column = MValue {
        name: format!("measure_value::{}", ty.lower()),
        ty,
        val,
    };
    Ok((vec![column], value_size(ty, value)))
}

fn value_size(ty: MType, s: &str) -> usize {
    match ty {
        MType::Double | MType::Bigint | MType::Timestamp => 8,
        MType::Boolean => 1,
        MType::Varchar => s.len(),
    }
}
