//! Facts one plugin shares with the plugins that run after it, by type.
//!
//! The core defines no fact: the plugin that produces one defines its type (the versions a
//! port accepts, the software that answered), and a consumer imports that type from the
//! producer's crate, so the dependency is visible in Cargo.toml and in the plugin's declared
//! run order. Each fact also has a JSON key, for the snapshot dynamic plugins receive.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;

use serde::Serialize;
pub use serde_json::Value;

/// A value a plugin shares. `KEY` names it in the JSON snapshot given to dynamic plugins.
pub trait Fact: Any + Send + Sync {
    const KEY: &'static str;
    /// The fact as JSON for dynamic plugins; `Null` keeps it out of the snapshot.
    fn to_json(&self) -> Value;
}

/// Implements [`Fact`] for a `Serialize` type under a JSON key.
#[macro_export]
macro_rules! serde_fact {
    ($ty:ty, $key:literal) => {
        impl $crate::fact::Fact for $ty {
            const KEY: &'static str = $key;
            fn to_json(&self) -> $crate::fact::Value {
                $crate::fact::to_value(self)
            }
        }
    };
}

#[doc(hidden)]
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

struct Entry {
    key: &'static str,
    value: Box<dyn Any + Send + Sync>,
    json: fn(&(dyn Any + Send + Sync)) -> Value,
}

/// The facts of one run, one value per type.
#[derive(Default)]
pub struct Facts {
    entries: BTreeMap<TypeId, Entry>,
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.values().map(|e| e.key))
            .finish()
    }
}

fn json_of<T: Fact>(v: &(dyn Any + Send + Sync)) -> Value {
    v.downcast_ref::<T>().map_or(Value::Null, Fact::to_json)
}

impl Facts {
    pub fn get<T: Fact>(&self) -> Option<&T> {
        self.entries
            .get(&TypeId::of::<T>())
            .and_then(|e| e.value.downcast_ref::<T>())
    }

    /// Sets (or replaces) the fact of type `T`.
    pub fn insert<T: Fact>(&mut self, value: T) {
        self.entries.insert(
            TypeId::of::<T>(),
            Entry {
                key: T::KEY,
                value: Box::new(value),
                json: json_of::<T>,
            },
        );
    }

    /// The fact of type `T`, created empty first if there is none.
    pub fn entry<T: Fact + Default>(&mut self) -> &mut T {
        if self.get::<T>().is_none() {
            self.insert(T::default());
        }
        self.entries
            .get_mut(&TypeId::of::<T>())
            .and_then(|e| e.value.downcast_mut::<T>())
            .expect("inserted above")
    }

    /// Every fact as JSON, by key: what a dynamic plugin sees of the plugins before it.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for e in self.entries.values() {
            let v = (e.json)(e.value.as_ref());
            if !v.is_null() {
                map.insert(e.key.to_string(), v);
            }
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize)]
    struct Count(u32);
    serde_fact!(Count, "count");

    #[test]
    fn facts_are_found_by_type_and_snapshotted_by_key() {
        let mut f = Facts::default();
        assert!(f.get::<Count>().is_none());
        f.entry::<Count>().0 += 2;
        assert_eq!(f.get::<Count>().map(|c| c.0), Some(2));
        assert_eq!(f.to_json(), serde_json::json!({"count": 2}));
    }
}
