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

fn normalize(
    i: usize,
    common: &RecordIn,
    r: &RecordIn,
) -> Result<Result<NormRecord, String>, ApiError> {
    let path = format!("records.{}.member", i + 1);
    let cdims = common.dimensions.as_deref().unwrap_or(&[]);
    let rdims = r.dimensions.as_deref().unwrap_or(&[]);
    check_dims("commonAttributes", cdims)?;
    check_dims(&path, rdims)?;
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
    let multi = mvt == "MULTI";
    let single_ty = if multi {
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

    let mvs = r.measure_values.as_ref().or(common.measure_values.as_ref());
    let mv = r.measure_value.as_ref().or(common.measure_value.as_ref());
    let mut values = Vec::new();
    let mut rejection: Option<String> = None;
    let mut size = 8 + measure_name.len();
    for (n, val) in &dims {
        size += n.len() + val.len();
        if n.len() > MAX_DIM_NAME && rejection.is_none() {
            rejection = Some(format!(
                "Dimension name '{n}' exceeds the maximum length of {MAX_DIM_NAME} bytes."
            ));
        }
        if val.len() > MAX_VALUE && rejection.is_none() {
            rejection = Some(format!(
                "Value of dimension '{n}' exceeds the maximum length of {MAX_VALUE} bytes."
            ));
        }
    }
    if measure_name.len() > MAX_MEASURE_NAME && rejection.is_none() {
        rejection = Some(format!(
            "Measure name exceeds the maximum length of {MAX_MEASURE_NAME} bytes."
        ));
    }
    if multi {
        if mv.is_some() {
            return Err(v(format!(
                "Record {i}: MeasureValue cannot be used with MeasureValueType MULTI; use MeasureValues."
            )));
        }
        let mvs = match mvs {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(v(format!(
                    "Record {i}: MeasureValues must be provided for MeasureValueType MULTI."
                )))
            }
        };
        if mvs.len() > MAX_MULTI_MEASURES && rejection.is_none() {
            rejection = Some(format!(
                "The number of measures in a multi-measure record exceeds {MAX_MULTI_MEASURES}."
            ));
        }
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
            if values.iter().any(|x: &MValue| x.name == *name) {
                return Err(v(format!(
                    "Record {i}: duplicate measure name '{name}' in MeasureValues."
                )));
            }
            if dims.iter().any(|(n, _)| n == name) {
                return Err(v(format!(
                    "Record {i}: measure name '{name}' is also used as a dimension name."
                )));
            }
            if name.len() > MAX_MEASURE_NAME && rejection.is_none() {
                rejection = Some(format!(
                    "Measure name '{name}' exceeds the maximum length of {MAX_MEASURE_NAME} bytes."
                ));
            }
            if value.len() > MAX_VALUE && rejection.is_none() {
                rejection = Some(format!(
                    "Measure value exceeds the maximum length of {MAX_VALUE} bytes."
                ));
            }
            let val = parse_value(ty, value, unit_ns).map_err(v)?;
            size += name.len() + value_size(ty, value);
            values.push(MValue {
                name: name.clone(),
                ty,
                val,
            });
        }
    } else {
        let ty = single_ty.expect("non-MULTI has a scalar type");
        if mvs.is_some_and(|m| !m.is_empty()) {
            return Err(v(format!(
                "Record {i}: MeasureValues can only be used with MeasureValueType MULTI."
            )));
        }
        let value = mv.ok_or_else(|| v(format!("Record {i} has no MeasureValue.")))?;
        if value.is_empty() {
            return Err(v(format!("Record {i} has an empty MeasureValue.")));
        }
        if value.len() > MAX_VALUE && rejection.is_none() {
            rejection = Some(format!(
                "Measure value exceeds the maximum length of {MAX_VALUE} bytes."
            ));
        }
        let val = parse_value(ty, value, unit_ns).map_err(v)?;
        size += value_size(ty, value);
        values.push(MValue {
            name: format!("measure_value::{}", ty.lower()),
            ty,
            val,
        });
    }
    if size > MAX_RECORD_SIZE && rejection.is_none() {
        rejection = Some(format!(
            "Record size {size} bytes exceeds the maximum record size of {MAX_RECORD_SIZE} bytes."
        ));
    }
    if let Some(reason) = rejection {
        return Ok(Err(reason));
    }
    Ok(Ok(NormRecord {
        dims,
        measure_name,
        time_ns,
        version,
        multi,
        values,
    }))
}

fn value_size(ty: MType, s: &str) -> usize {
    match ty {
        MType::Double | MType::Bigint | MType::Timestamp => 8,
        MType::Boolean => 1,
        MType::Varchar => s.len(),
    }
}
