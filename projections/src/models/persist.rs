//! The instance read models as plain data, for the read-model snapshot the server
//! writes (and loads at start-up instead of replaying the whole log).
//!
//! Only the records are kept: every index (lists, mgmt, replicas, quota) is a function
//! of the records' footprints (see [`super::footprint`]), so [`InstanceModels::restore`]
//! derives them again, exactly as the incremental applies would have left them.

use aggregates::instance::Instance;
use serde::{Deserialize, Serialize};

use super::footprint::Footprint;
use super::{InstanceModels, ModelSet, Record};
use crate::Position;

/// One record of the instance models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordImage {
    /// The folded instance. Its `access` is `None` here: the stored `access` object is
    /// in [`RecordImage::access`], as the models keep it (a `Value` per instance would
    /// cost time to build and leave freed memory behind at every load).
    pub instance: Instance,
    /// The stored `access` object as compact JSON text, if any.
    pub access: Option<String>,
    /// Position of the last event folded into it.
    pub position: Position,
    /// Whether its quota was released by a deletion request.
    pub quota_released: bool,
}

/// Every record of the instance models and the position they reflect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancesImage {
    /// [`InstanceModels::position`] when the image was taken.
    pub position: Position,
    /// Every record, by ascending id.
    pub records: Vec<RecordImage>,
}

impl InstanceModels {
    /// Copies every record. Take it while no event is being applied (the projector's
    /// gate held), so it reflects exactly [`InstancesImage::position`].
    pub fn image(&self) -> InstancesImage {
        let set = self.set();
        let mut records: Vec<RecordImage> = set
            .records
            .iter()
            .map(|e| RecordImage {
                instance: e.value().folded.clone(),
                access: e.value().access_json.as_deref().map(str::to_string),
                position: e.value().position,
                quota_released: e.value().quota_released,
            })
            .collect();
        records.sort_unstable_by_key(|r| r.instance.id);
        InstancesImage {
            position: set.position(),
            records,
        }
    }

    /// Replaces the models by the ones `image` describes, indexes derived from the
    /// records. Refuses (changing nothing) an image that no apply could have produced:
    /// a record of an instance that does not exist, the same id twice, a record newer
    /// than the image.
    pub fn restore(&self, image: InstancesImage) -> Result<(), String> {
        let mut seen = std::collections::HashSet::with_capacity(image.records.len());
        for r in &image.records {
            let Some(id) = r.instance.id else {
                return Err("a record of an instance that was never created".into());
            };
            if !seen.insert(id) {
                return Err(format!("instance {id} is recorded twice"));
            }
            if r.position > image.position {
                return Err(format!(
                    "instance {id} is at position {}, after the image's {}",
                    r.position, image.position
                ));
            }
        }
        let set = ModelSet::default();
        for r in image.records {
            let Some(id) = r.instance.id else { continue };
            let mut record = Record {
                position: r.position,
                quota_released: r.quota_released,
                ..Record::default()
            };
            if r.instance.access.is_some() {
                // Written with the access inline: compact it as an apply would.
                record.put_instance(r.instance);
            } else {
                record.folded = r.instance;
                record.access_json = r.access.map(String::into_boxed_str);
            }
            let footprint = Footprint::of(&record.folded, record.quota_released);
            let new = footprint.as_ref();
            set.lists.update(id, None, new);
            set.mgmt.update(id, None, new);
            set.replicas.update(id, None, new);
            set.quota.update(id, None, new);
            set.records.insert(id, Box::new(record));
        }
        set.advance_all(image.position);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(set);
        Ok(())
    }
}
