//! Named volumes: create, inspect, remove.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::{Client, query, segment};
use super::containers::Removal;
use super::error::DockerError;
use crate::http::Body;

/// `GET /volumes/{name}`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Volume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver", default)]
    pub driver: String,
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

fn null_as_empty<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<BTreeMap<String, String>>::deserialize(d).map(Option::unwrap_or_default)
}

impl Client {
    /// `GET /volumes/{name}`; `None` if there is no such volume.
    pub fn inspect_volume(&self, name: &str) -> Result<Option<Volume>, DockerError> {
        self.get_json_opt(self.path(&format!("/volumes/{}", segment(name))))
    }

    /// `POST /volumes/create` (local driver). Creating an existing volume returns it unchanged
    /// (Docker's behaviour; its labels are not updated).
    pub fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Volume, DockerError> {
        let body = serde_json::json!({ "Name": name, "Labels": labels }).to_string();
        let target = self.path("/volumes/create");
        let response = self.send(
            "POST",
            target,
            Vec::new(),
            Body::json(body.into_bytes()),
            self.timeouts(),
        )?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        response.json()
    }

    /// `DELETE /volumes/{name}`. A volume in use is a 409 [`DockerError::Status`].
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<Removal, DockerError> {
        let q = query(&[("force", if force { "1" } else { "0" })]);
        let target = self.path(&format!("/volumes/{}{q}", segment(name)));
        Ok(
            match self.status_of("DELETE", target, &[204, 404], self.timeouts())? {
                404 => Removal::NotFound,
                _ => Removal::Removed,
            },
        )
    }
}
