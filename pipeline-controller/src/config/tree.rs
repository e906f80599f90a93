//! The configuration as a tree of tables and scalars, through serde: what
//! [`ConfigHandle::update`](super::ConfigHandle::update) edits by dotted path and what
//! [`flatten`](super::params::flatten) lists for the change history.
//!
//! No file format is involved, so live updates and their audit work without the
//! `file-config` feature (and without a TOML or YAML parser in the build). Leaves print
//! as a TOML file writes them (`0.9`, `20.0`, `1024`, `true`, strings unquoted), and
//! [`parse_value`] reads TOML's scalar syntax, so the history reads the same whichever
//! features are on.

use serde::de::value::{MapDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One node of a configuration tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Bool(bool),
    Integer(i64),
    /// An integer above `i64::MAX` (TOML has none; the tree keeps them rather than fail).
    Unsigned(u64),
    Float(f64),
    String(String),
    Table(BTreeMap<String, Node>),
}

impl fmt::Display for Node {
    /// A leaf as a TOML file writes it, strings without quotes; a table as `{...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Bool(b) => write!(f, "{b}"),
            Node::Integer(i) => write!(f, "{i}"),
            Node::Unsigned(u) => write!(f, "{u}"),
            // toml_writer's rule: integral floats keep a `.0`; `inf` and `nan` bare.
            Node::Float(x) if x.is_nan() => {
                f.write_str(if x.is_sign_negative() { "-nan" } else { "nan" })
            }
            Node::Float(x) if *x == 0.0 => {
                f.write_str(if x.is_sign_negative() { "-0.0" } else { "0.0" })
            }
            Node::Float(x) if x.is_finite() && x % 1.0 == 0.0 => write!(f, "{x}.0"),
            Node::Float(x) => write!(f, "{x}"),
            Node::String(s) => f.write_str(s),
            Node::Table(_) => f.write_str("{...}"),
        }
    }
}

/// Why a value did not fit the tree or the tree did not fit the model; the message is
/// serde's (`invalid type: string "x", expected f64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeError(String);

impl TreeError {
    /// What went wrong.
    pub(crate) fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TreeError {}

impl ser::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TreeError(msg.to_string())
    }
}

impl de::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TreeError(msg.to_string())
    }
}

/// `value` as a tree.
///
/// # Errors
///
/// For shapes a configuration does not use (sequences, bytes, `None`, data-carrying
/// enum variants, non-string map keys).
pub(crate) fn to_tree<T: Serialize + ?Sized>(value: &T) -> Result<Node, TreeError> {
    value.serialize(TreeSerializer)
}

/// A `T` read back from a tree.
///
/// # Errors
///
/// serde's message when the tree does not fit `T` (a wrong type, an unknown field).
pub(crate) fn from_tree<T: DeserializeOwned>(node: Node) -> Result<T, TreeError> {
    T::deserialize(node)
}

/// A value written in TOML's scalar syntax: `true`, `4`, `-1_000`, `0x1f`, `0.8`,
/// `1e3`, `inf`, `"quoted"` or `'literal'`. Anything else (`10s`, `drop_oldest`) is
/// taken as the string it is, so durations and modes can be written bare.
pub(crate) fn parse_value(text: &str) -> Node {
    let trimmed = text.trim();
    match trimmed {
        "true" => return Node::Bool(true),
        "false" => return Node::Bool(false),
        "inf" | "+inf" => return Node::Float(f64::INFINITY),
        "-inf" => return Node::Float(f64::NEG_INFINITY),
        "nan" | "+nan" => return Node::Float(f64::NAN),
        "-nan" => return Node::Float(-f64::NAN),
        _ => {}
    }
    parse_integer(trimmed)
        .or_else(|| parse_float(trimmed))
        .or_else(|| parse_quoted(trimmed))
        .unwrap_or_else(|| Node::String(text.to_owned()))
}

/// Digits with single underscores between them (TOML's rule), underscores removed.
fn digits(text: &str, radix: u32) -> Option<String> {
    let ok = !text.is_empty()
        && !text.starts_with('_')
        && !text.ends_with('_')
        && !text.contains("__")
        && text.chars().all(|c| c == '_' || c.is_digit(radix));
    ok.then(|| text.replace('_', ""))
}

fn parse_integer(text: &str) -> Option<Node> {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let digits = digits(rest, radix)?;
            return u64::from_str_radix(&digits, radix).ok().map(unsigned);
        }
    }
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits(body, 10)?;
    if digits.len() > 1 && digits.starts_with('0') {
        return None; // TOML has no leading zeros
    }
    if negative {
        format!("-{digits}").parse().ok().map(Node::Integer)
    } else {
        digits.parse().ok().map(unsigned)
    }
}

fn unsigned(value: u64) -> Node {
    i64::try_from(value).map_or(Node::Unsigned(value), Node::Integer)
}

/// TOML's float: an integer part, then a fraction, an exponent or both.
fn parse_float(text: &str) -> Option<Node> {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, fraction) = match mantissa.split_once('.') {
        Some((int, fraction)) => (int, Some(fraction)),
        None => (mantissa, None),
    };
    if fraction.is_none() && exponent.is_none() {
        return None;
    }
    let int = digits(int, 10)?;
    if int.len() > 1 && int.starts_with('0') {
        return None;
    }
    if let Some(fraction) = fraction {
        digits(fraction, 10)?;
    }
    if let Some(exponent) = exponent {
        digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent), 10)?;
    }
    text.replace('_', "").parse().ok().map(Node::Float)
}

/// A basic string (`"..."`, with TOML's escapes) or a literal one (`'...'`).
fn parse_quoted(text: &str) -> Option<Node> {
    if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        let inner = &text[1..text.len() - 1];
        return (!inner.contains(['\'', '\n'])).then(|| Node::String(inner.to_owned()));
    }
    if !(text.len() >= 2 && text.starts_with('"') && text.ends_with('"')) {
        return None;
    }
    let mut out = String::new();
    let mut chars = text[1..text.len() - 1].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => out.push(match chars.next()? {
                'b' => '\u{8}',
                't' => '\t',
                'n' => '\n',
                'f' => '\u{c}',
                'r' => '\r',
                'e' => '\u{1b}',
                '"' => '"',
                '\\' => '\\',
                escape @ ('x' | 'u' | 'U') => {
                    let len = match escape {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.by_ref().take(len).collect();
                    if hex.len() != len {
                        return None;
                    }
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                _ => return None,
            }),
            c => out.push(c),
        }
    }
    Some(Node::String(out))
}

/// Serializes into a [`Node`].
struct TreeSerializer;

/// The fields of a struct or the entries of a map being serialized.
struct TableSerializer {
    table: BTreeMap<String, Node>,
    key: Option<String>,
}

fn unsupported(what: &str) -> TreeError {
    TreeError(format!("a configuration has no {what}"))
}

impl ser::Serializer for TreeSerializer {
    type Ok = Node;
    type Error = TreeError;
    type SerializeSeq = Impossible<Node, TreeError>;
    type SerializeTuple = Impossible<Node, TreeError>;
    type SerializeTupleStruct = Impossible<Node, TreeError>;
    type SerializeTupleVariant = Impossible<Node, TreeError>;
    type SerializeMap = TableSerializer;
    type SerializeStruct = TableSerializer;
    type SerializeStructVariant = Impossible<Node, TreeError>;

    fn serialize_bool(self, v: bool) -> Result<Node, TreeError> {
        Ok(Node::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Node, TreeError> {
        Ok(Node::Integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Node, TreeError> {
        Ok(Node::Integer(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Node, TreeError> {
        Ok(unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Node, TreeError> {
        Ok(Node::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Node, TreeError> {
        Ok(Node::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Node, TreeError> {
        Ok(Node::String(v.into()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, TreeError> {
        Ok(Node::String(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Node, TreeError> {
        Err(unsupported("bytes"))
    }
    fn serialize_none(self) -> Result<Node, TreeError> {
        Err(unsupported("optional value"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, TreeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, TreeError> {
        Err(unsupported("unit value"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Node, TreeError> {
        Err(unsupported("unit value"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Node, TreeError> {
        Ok(Node::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Node, TreeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Node, TreeError> {
        Err(unsupported("enum variant with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, TreeError> {
        Err(unsupported("list"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, TreeError> {
        Err(unsupported("list"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, TreeError> {
        Err(unsupported("list"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, TreeError> {
        Err(unsupported("enum variant with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<TableSerializer, TreeError> {
        Ok(TableSerializer {
            table: BTreeMap::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<TableSerializer, TreeError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, TreeError> {
        Err(unsupported("enum variant with data"))
    }
}

impl ser::SerializeMap for TableSerializer {
    type Ok = Node;
    type Error = TreeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TreeError> {
        match key.serialize(TreeSerializer)? {
            Node::String(key) => {
                self.key = Some(key);
                Ok(())
            }
            _ => Err(unsupported("map key that is not a string")),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TreeError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| TreeError("a map value without its key".to_owned()))?;
        self.table.insert(key, value.serialize(TreeSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Node, TreeError> {
        Ok(Node::Table(self.table))
    }
}

impl ser::SerializeStruct for TableSerializer {
    type Ok = Node;
    type Error = TreeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TreeError> {
        self.table
            .insert(key.to_owned(), value.serialize(TreeSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Node, TreeError> {
        Ok(Node::Table(self.table))
    }
}

impl<'de> IntoDeserializer<'de, TreeError> for Node {
    type Deserializer = Node;

    fn into_deserializer(self) -> Node {
        self
    }
}

impl<'de> de::Deserializer<'de> for Node {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self {
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Integer(i) => visitor.visit_i64(i),
            Node::Unsigned(u) => visitor.visit_u64(u),
            Node::Float(x) => visitor.visit_f64(x),
            Node::String(s) => visitor.visit_string(s),
            Node::Table(table) => {
                let mut map = MapDeserializer::new(table.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        match self {
            Node::String(variant) => {
                let variant: StringDeserializer<TreeError> = variant.into_deserializer();
                visitor.visit_enum(variant)
            }
            other => other.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_parse_as_toml_reads_them() {
        assert_eq!(parse_value("true"), Node::Bool(true));
        assert_eq!(parse_value(" 4 "), Node::Integer(4));
        assert_eq!(parse_value("-1_000"), Node::Integer(-1000));
        assert_eq!(parse_value("0x1f"), Node::Integer(31));
        assert_eq!(
            parse_value("18446744073709551615"),
            Node::Unsigned(u64::MAX)
        );
        assert_eq!(parse_value("0.8"), Node::Float(0.8));
        assert_eq!(parse_value("1e3"), Node::Float(1000.0));
        assert_eq!(parse_value("-2.5E-1"), Node::Float(-0.25));
        assert_eq!(parse_value("inf"), Node::Float(f64::INFINITY));
        assert_eq!(parse_value("\"a\\tb\""), Node::String("a\tb".into()));
        assert_eq!(parse_value("'c:\\x'"), Node::String("c:\\x".into()));
        // Not TOML: the text itself, untrimmed.
        for bare in [
            "10s",
            "drop_oldest",
            "1.",
            ".5",
            "01",
            "1__0",
            "\"open",
            " x ",
        ] {
            assert_eq!(parse_value(bare), Node::String(bare.into()), "{bare}");
        }
    }

    #[test]
    fn leaves_print_as_a_toml_file_writes_them() {
        let printed: Vec<String> = [
            Node::Float(20.0),
            Node::Float(0.9),
            Node::Float(-0.0),
            Node::Float(f64::INFINITY),
            Node::Float(f64::NAN),
            Node::Integer(-3),
            Node::Bool(false),
            Node::String("30s".into()),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            printed,
            ["20.0", "0.9", "-0.0", "inf", "nan", "-3", "false", "30s"]
        );
    }

    #[test]
    fn a_configuration_round_trips() {
        let mut config = super::super::PipelineConfig::default();
        config
            .stages
            .insert("enrich".into(), super::super::StageConfig::default());
        config.controller.decision_log_capacity = usize::MAX;
        let tree = to_tree(&config).unwrap();
        assert_eq!(
            from_tree::<super::super::PipelineConfig>(tree).unwrap(),
            config
        );
    }

    #[test]
    fn a_misfit_names_the_type() {
        let mut tree = to_tree(&super::super::PipelineConfig::default()).unwrap();
        let Node::Table(root) = &mut tree else {
            unreachable!()
        };
        let Some(Node::Table(policy)) = root.get_mut("policy") else {
            unreachable!()
        };
        policy.insert("growth_factor".into(), Node::String("x".into()));
        let error = from_tree::<super::super::PipelineConfig>(tree).unwrap_err();
        assert_eq!(error.message(), "invalid type: string \"x\", expected f64");
    }

    /// The history reads the same with and without `file-config`: the tree agrees with
    /// TOML on every leaf of a configuration and on how a value string is read.
    #[cfg(feature = "file-config")]
    #[test]
    fn the_tree_agrees_with_toml() {
        fn toml_leaves(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, inner) in table {
                        let path = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        toml_leaves(&path, inner, out);
                    }
                }
                toml::Value::String(s) => {
                    out.insert(prefix.to_owned(), s.clone());
                }
                other => {
                    out.insert(prefix.to_owned(), other.to_string());
                }
            }
        }
        let mut config = super::super::PipelineConfig::default();
        config.policy.psi_critical = 20.0;
        config.policy.growth_factor = 1.0 / 3.0 + 1.0;
        config.policy.min_publish_rate = 1e300;
        config.policy.cooldown = std::time::Duration::from_millis(90_500);
        let stage = super::super::StageConfig {
            overflow: pipeline_core::bus::OverflowPolicy::DropOldest,
            droppable: true,
            ..super::super::StageConfig::default()
        };
        config.stages.insert("enrich".into(), stage);
        let mut by_toml = BTreeMap::new();
        toml_leaves("", &toml::Value::try_from(&config).unwrap(), &mut by_toml);
        assert_eq!(super::super::params::flatten(&config), by_toml);

        for text in [
            "true",
            "4",
            "-1_000",
            "+7",
            "0x1f",
            "0o17",
            "0b101",
            "0.8",
            "1e3",
            "-2.5E-1",
            "6.02e+23",
            "inf",
            "-inf",
            "\"a\\tb\"",
            "'lit'",
            "10s",
            "drop_oldest",
            "1.",
            ".5",
            "01",
            "1__0",
            "_1",
            "\"open",
            "1e",
            "9223372036854775807",
        ] {
            let by_toml = toml::from_str::<toml::Table>(&format!("v = {text}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(text.to_owned()));
            assert_eq!(parse_value(text), to_tree(&by_toml).unwrap(), "{text}");
        }
    }
}
