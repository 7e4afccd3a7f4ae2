//! Bootstrapping a member: etcd's `--initial-cluster` and friends, and member and cluster IDs
//! derived exactly as etcd derives them, so a lode member started with etcd's flags has the ID
//! etcd would give it (the default single member is `8e9e05c52164694d` in cluster
//! `cdf818194e3a8c32`, as in etcd). Pure, plus the identity file's encoding.
//!
//! Invariants:
//! - a member ID is the first 8 bytes (big-endian) of SHA-1 over the member's peer URLs, sorted
//!   and concatenated, followed by the cluster token; 0 is never a member ID;
//! - a cluster ID is the first 8 bytes of SHA-1 over its member IDs, ascending, each 8 bytes
//!   big-endian;
//! - once a data dir has an identity, that identity is the member's for good: the bootstrap
//!   flags only matter the first time (as in etcd).

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use crate::ids::MemberId;
use crate::urls::{parse_url, Url, Urls};

/// etcd's default `--initial-cluster-token`.
pub const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";

/// etcd's default peer URL.
pub const DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// A member as the initial cluster names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs, as given.
    pub peer_urls: Vec<Url>,
    /// Its ID.
    pub id: MemberId,
}

/// The cluster a member bootstraps into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    /// Every member, ascending by ID.
    pub members: Vec<InitialMember>,
    /// The cluster ID.
    pub cluster_id: u64,
}

impl InitialCluster {
    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&InitialMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// etcd's member ID for `peer_urls` under `token`.
pub fn member_id(peer_urls: &[Url], token: &str) -> MemberId {
    let mut urls: Vec<String> = peer_urls.iter().map(ToString::to_string).collect();
    urls.sort();
    let mut hasher = Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(token.as_bytes());
    MemberId::new(first_word(&hasher.finalize()))
}

/// etcd's cluster ID for a set of member IDs.
pub fn cluster_id(member_ids: &[MemberId]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.get().to_be_bytes());
    }
    first_word(&hasher.finalize())
}

fn first_word(hash: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(word)
}

/// Parses `--initial-cluster` (`name=url,name=url,...`; a name listed with several URLs has
/// them all) and checks it against this member's name and `--initial-advertise-peer-urls`, as
/// etcd does at bootstrap.
pub fn initial_cluster(
    spec: &str,
    own_name: &str,
    advertise_peer_urls: &Urls,
    token: &str,
) -> Result<InitialCluster, String> {
    let mut by_name: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    let mut seen_urls: Vec<Url> = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let Some((name, url)) = item.split_once('=') else {
            return Err(format!(
                "--initial-cluster: {item:?} is not name=url (e.g. default=http://localhost:2380)"
            ));
        };
        if name.is_empty() {
            return Err(format!("--initial-cluster: {item:?} has no name"));
        }
        let url = parse_url(url.trim()).map_err(|e| format!("--initial-cluster: {e}"))?;
        if seen_urls.contains(&url) {
            return Err(format!(
                "--initial-cluster: peer URL {url} is listed more than once"
            ));
        }
        seen_urls.push(url.clone());
        by_name.entry(name.to_string()).or_default().push(url);
    }
    let Some(own_urls) = by_name.get(own_name) else {
        return Err(format!(
            "--initial-cluster has no member named {own_name:?} (this member's --name); it lists {}",
            by_name.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    };
    let mut own_sorted: Vec<String> = own_urls.iter().map(ToString::to_string).collect();
    own_sorted.sort();
    let mut advertised: Vec<String> = advertise_peer_urls
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    advertised.sort();
    if own_sorted != advertised {
        return Err(format!(
            "--initial-cluster gives {own_name:?} the peer URLs {} but \
             --initial-advertise-peer-urls is {}: they must match",
            own_sorted.join(","),
            advertised.join(",")
        ));
    }
    let mut members = Vec::new();
    for (name, peer_urls) in by_name {
        let id = member_id(&peer_urls, token);
        if id.is_none() {
            return Err(format!("member {name:?} would get the reserved ID 0"));
        }
        if let Some(other) = members.iter().find(|m: &&InitialMember| m.id == id) {
            return Err(format!(
                "members {:?} and {name:?} get the same ID {id:x}",
                other.name
            ));
        }
        members.push(InitialMember {
            name,
            peer_urls,
            id,
        });
    }
    members.sort_by_key(|m| m.id);
    let ids: Vec<MemberId> = members.iter().map(|m| m.id).collect();
    Ok(InitialCluster {
        cluster_id: cluster_id(&ids),
        members,
    })
}

/// Who a data dir belongs to: fixed when the data dir is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The member's name at creation.
    pub name: String,
    /// The member ID.
    pub member_id: MemberId,
    /// The cluster ID.
    pub cluster_id: u64,
    /// The members the cluster was bootstrapped with (this one included): ID, name, peer URLs;
    /// for a member that joined a running cluster, the members it found there.
    pub members: Vec<(MemberId, String, Vec<String>)>,
    /// Which of `members` were learners (only ever for a member that joined).
    pub learners: Vec<MemberId>,
}

const IDENTITY_HEADER: &str = "lode member identity v1";

/// The identity of member `name` bootstrapping the new cluster `cluster` (from
/// [`initial_cluster`]).
pub fn new_cluster_identity(cluster: &InitialCluster, name: &str) -> Result<Identity, String> {
    let own = cluster
        .member(name)
        .ok_or("this member is missing from its own initial cluster")?;
    Ok(Identity {
        name: name.to_string(),
        member_id: own.id,
        cluster_id: cluster.cluster_id,
        members: cluster
            .members
            .iter()
            .map(|m| {
                let urls = m.peer_urls.iter().map(ToString::to_string).collect();
                (m.id, m.name.clone(), urls)
            })
            .collect(),
        learners: Vec::new(),
    })
}

/// Writes `bytes` to `path` through a synced temporary file renamed into place, then syncs the
/// directory: `path` holds all of it or nothing, even across a crash.
pub fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Name of the identity file in a data dir.
pub const IDENTITY_FILE: &str = "identity";

impl Identity {
    /// The identity file's text: a header, `key=value` lines, and a CRC32C of what precedes it.
    pub fn encode(&self) -> String {
        let mut body = format!(
            "{IDENTITY_HEADER}\nname={}\nmember_id={:016x}\ncluster_id={:016x}\n",
            self.name, self.member_id, self.cluster_id
        );
        for (id, name, urls) in &self.members {
            // The name last: it is the one field that may hold spaces.
            body.push_str(&format!("member={id:016x} {} {name}\n", urls.join(",")));
        }
        for id in &self.learners {
            body.push_str(&format!("learner={id:016x}\n"));
        }
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c={crc:08x}\n")
    }

    /// Reads an identity file's text; any damage is an error naming it.
    pub fn decode(text: &str) -> Result<Identity, String> {
        let Some((body, crc_line)) = text.trim_end_matches('\n').rsplit_once('\n') else {
            return Err("the identity file is truncated".into());
        };
        let body = format!("{body}\n");
        let crc = crc_line
            .strip_prefix("crc32c=")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or("the identity file has no checksum line")?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return Err("the identity file's checksum does not match".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(IDENTITY_HEADER) {
            return Err("not a lode identity file (or another version)".into());
        }
        let mut fields = BTreeMap::new();
        let mut members = Vec::new();
        let mut learners = Vec::new();
        for line in lines {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("bad identity line {line:?}"))?;
            if key == "learner" {
                learners.push(MemberId::new(
                    u64::from_str_radix(value, 16)
                        .map_err(|_| format!("bad learner ID in {line:?}"))?,
                ));
                continue;
            }
            if key == "member" {
                let mut parts = value.splitn(3, ' ');
                let (Some(id), Some(urls), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("bad identity member line {line:?}"));
                };
                let id = u64::from_str_radix(id, 16)
                    .map_err(|_| format!("bad member ID in {line:?}"))?;
                members.push((
                    MemberId::new(id),
                    name.to_string(),
                    urls.split(',').map(str::to_string).collect(),
                ));
                continue;
            }
            fields.insert(key, value);
        }
        let hex = |key: &str| -> Result<u64, String> {
            fields
                .get(key)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .ok_or_else(|| format!("the identity file has no valid {key}"))
        };
        Ok(Identity {
            name: fields
                .get("name")
                .ok_or("the identity file has no name")?
                .to_string(),
            member_id: MemberId::new(hex("member_id")?),
            cluster_id: hex("cluster_id")?,
            members,
            learners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &str) -> Urls {
        crate::urls::parse_urls(list).unwrap()
    }

    #[test]
    fn etcd_default_member_and_cluster_ids() {
        // etcd's defaults: name "default", peer URL http://localhost:2380, token "etcd-cluster".
        let cluster = initial_cluster(
            "default=http://localhost:2380",
            "default",
            &urls(DEFAULT_PEER_URL),
            DEFAULT_CLUSTER_TOKEN,
        )
        .unwrap();
        assert_eq!(cluster.members[0].id, MemberId::new(0x8e9e05c52164694d));
        assert_eq!(cluster.cluster_id, 0xcdf818194e3a8c32);
    }

    #[test]
    fn ids_depend_on_urls_and_token_not_on_order() {
        let a = initial_cluster(
            "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380",
            "n2",
            &urls("http://10.0.0.2:2380"),
            "tok",
        )
        .unwrap();
        let b = initial_cluster(
            "n3=http://10.0.0.3:2380,n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380",
            "n1",
            &urls("http://10.0.0.1:2380"),
            "tok",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.members.len(), 3);
        assert!(a.members.windows(2).all(|w| w[0].id < w[1].id));
        let other_token = initial_cluster(
            "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380",
            "n1",
            &urls("http://10.0.0.1:2380"),
            "other",
        )
        .unwrap();
        assert_ne!(a.cluster_id, other_token.cluster_id);
        // Several URLs of one member: sorted before hashing.
        let two = urls("http://b:1,http://a:1");
        let swapped = urls("http://a:1,http://b:1");
        assert_eq!(member_id(&two.0, "t"), member_id(&swapped.0, "t"));
    }

    #[test]
    fn misconfiguration_is_explained() {
        let advertise = urls("http://10.0.0.1:2380");
        for (spec, name, why) in [
            ("n2=http://10.0.0.2:2380", "n1", "no member named \"n1\""),
            ("n1", "n1", "is not name=url"),
            ("=http://10.0.0.1:2380", "n1", "has no name"),
            ("n1=10.0.0.1:2380", "n1", "expected http://"),
            (
                "n1=http://10.0.0.1:2380,n2=http://10.0.0.1:2380",
                "n1",
                "more than once",
            ),
            ("n1=http://10.0.0.9:2380", "n1", "must match"),
        ] {
            let error = initial_cluster(spec, name, &advertise, "t").unwrap_err();
            assert!(error.contains(why), "{spec}: {error}");
        }
    }

    #[test]
    fn identity_round_trips_and_damage_is_refused() {
        let identity = Identity {
            name: "n1".into(),
            member_id: MemberId::new(0x8e9e05c52164694d),
            cluster_id: 0xcdf818194e3a8c32,
            members: vec![
                (
                    MemberId::new(0x8e9e05c52164694d),
                    "n1".into(),
                    vec!["http://a:1".into()],
                ),
                (
                    MemberId::new(7),
                    "n 2".into(),
                    vec!["http://b:1".into(), "http://c:1".into()],
                ),
            ],
            learners: vec![MemberId::new(7)],
        };
        let text = identity.encode();
        assert_eq!(Identity::decode(&text).unwrap(), identity);
        let damaged = text.replace("n1", "n2");
        assert!(Identity::decode(&damaged).unwrap_err().contains("checksum"));
        assert!(Identity::decode("").is_err());
        assert!(Identity::decode(&text[..text.len() / 2]).is_err());
    }
}
