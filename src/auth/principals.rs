//! The principals file: users and groups with SIDs and password hashes, in TOML.
//!
//! ```toml
//! machine_sid = "S-1-5-21-3623811015-3361044348-30300820"   # made once when absent
//!
//! [users.alice]
//! sid = "S-1-5-21-3623811015-3361044348-30300820-1001"
//! groups = ["deploy"]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # argon2id (ours) or bcrypt "$2y$..." from htpasswd
//! nt_hash = "8846f7eaee8fb117ad06bdd830b7586c"        # NTLM only: MD4 of the UTF-16LE password
//! certificates = ["UPN or e-mail or CN", "SHA-1 thumbprint"] # client certificates that are alice
//!
//! [groups.deploy]
//! sid = "S-1-5-21-3623811015-3361044348-30300820-1100"
//! ```
//!
//! SECURITY: the NT hash is password-equivalent for NTLM (anyone who reads it can authenticate as the
//! user), so the file is written with mode 0600 and should be kept so. Password hashes are verified on the
//! blocking pool, never on the async workers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::password::{HashError, NtHash, Password, PasswordHash};
use super::AuthError;
use crate::authz::Sid;

/// The parsed principals file. In a server's configuration data (`config::ServerConfig`) it takes the file's
/// form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FileForm", into = "FileForm")]
pub struct Principals {
    machine_sid: Option<Sid>,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's SID.
    pub sid: Sid,
    /// Names of the groups it belongs to.
    pub groups: Vec<String>,
    /// Its password hash, for Basic.
    pub password: Option<PasswordHash>,
    /// Its NT hash, for NTLM.
    pub nt_hash: Option<NtHash>,
    /// Client certificates (UPN, e-mail, CN or SHA-1 thumbprint) that identify it.
    pub certificates: Vec<String>,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's SID.
    pub sid: Sid,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileForm {
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_sid: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserForm>,
    #[serde(default)]
    groups: BTreeMap<String, GroupForm>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserForm {
    sid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nt_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupForm {
    sid: String,
}

impl Principals {
    /// Reads and checks a principals file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AuthError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| AuthError::Principals {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses the TOML text of a principals file.
    pub fn parse(text: &str) -> Result<Self, PrincipalsError> {
        let form: FileForm = toml::from_str(text).map_err(PrincipalsError::Toml)?;
        Self::try_from(form)
    }

    /// The TOML text of this file.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(&FileForm::from(self.clone())).unwrap_or_default();
        format!("# bits_compact principals. SECURITY: nt_hash values are password-equivalent; keep this file mode 0600.\n{body}")
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), AuthError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        let err = |source| AuthError::Write {
            path: path.to_owned(),
            source,
        };
        let tmp = temp_path(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        let written = file
            .write_all(self.to_toml().as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    /// The machine SID, made (random, S-1-5-21-a-b-c) when the file has none.
    pub fn machine_sid(&mut self) -> Sid {
        if let Some(sid) = &self.machine_sid {
            return sid.clone();
        }
        let mut bytes = [0u8; 12];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        let part =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let sid = Sid::new(5, &[21, part(0), part(4), part(8)]).unwrap_or_else(Sid::everyone);
        self.machine_sid = Some(sid.clone());
        sid
    }

    /// The next free relative ID (1000 and up) under the machine SID.
    fn next_rid(&mut self) -> u32 {
        let machine = self.machine_sid();
        let used = self
            .users
            .values()
            .map(|u| &u.sid)
            .chain(self.groups.values().map(|g| &g.sid))
            .filter(|s| s.sub_authorities().starts_with(machine.sub_authorities()))
            .filter_map(|s| s.sub_authorities().last().copied());
        used.max().map_or(1000, |m| m.max(999) + 1)
    }

    /// Creates a user, or gives an existing one a new password: a new argon2id hash and NT hash. User and
    /// group names compare case-insensitively, as Windows account names do (`Alice` is `alice`). An existing
    /// user keeps its name, SID, certificates and groups; `groups` are added to those it has, and created as
    /// needed. Returns whether the user is new.
    ///
    /// SECURITY: dropping an existing user's groups here would silently change what SDDL group rules grant.
    pub fn set_user(
        &mut self,
        name: &str,
        password: &Password,
        groups: &[String],
    ) -> Result<bool, AuthError> {
        self.upsert_user(name, Some(password), groups, &[])
    }

    /// Creates a user, or updates an existing one (names ignore case): a new password when one is given
    /// (a new user without one has none, and can authenticate only by certificate or Kerberos), `groups`
    /// and `certificates` added to those it has (groups created as needed: `BA` or `Administrators` get
    /// S-1-5-32-544, `BU` or `Users` S-1-5-32-545). Returns whether the user is new.
    ///
    /// SECURITY: nothing is ever dropped here, so an update never silently changes what SDDL group rules
    /// grant; use [`Principals::remove_user`] to take a user away.
    pub fn upsert_user(
        &mut self,
        name: &str,
        password: Option<&Password>,
        groups: &[String],
        certificates: &[String],
    ) -> Result<bool, AuthError> {
        let mut wanted = Vec::new();
        for g in groups {
            let (g, _) = self.ensure_group(g)?;
            if !wanted.contains(&g) {
                wanted.push(g);
            }
        }
        let existing = self
            .users
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned();
        let hashes = match password {
            Some(p) => Some((PasswordHash::argon2id(p)?, NtHash::of(p))),
            None => None,
        };
        let Some(key) = existing else {
            let rid = self.next_rid();
            let sid = self.machine_sid().with_rid(rid).ok_or(AuthError::Sid)?;
            let (password, nt_hash) = hashes.unzip();
            let user = User {
                sid,
                groups: wanted,
                password,
                nt_hash,
                certificates: certificates.to_vec(),
            };
            self.users.insert(name.to_owned(), user);
            return Ok(true);
        };
        if let Some(user) = self.users.get_mut(&key) {
            for g in wanted {
                if !user.groups.contains(&g) {
                    user.groups.push(g);
                }
            }
            for c in certificates {
                if !user.certificates.iter().any(|k| k.eq_ignore_ascii_case(c)) {
                    user.certificates.push(c.clone());
                }
            }
            if let Some((hash, nt)) = hashes {
                user.password = Some(hash);
                user.nt_hash = Some(nt);
            }
        }
        Ok(false)
    }

    /// The group named `name` (ignoring case), created if missing: `BA` or `Administrators` get
    /// S-1-5-32-544, `BU` or `Users` S-1-5-32-545, any other a new SID under the machine SID. Returns its name as stored and whether it is new.
    pub fn ensure_group(&mut self, name: &str) -> Result<(String, bool), AuthError> {
        if let Some(existing) = self.groups.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            return Ok((existing.clone(), false));
        }
        let sid = match well_known_group(name) {
            Some(sid) => sid,
            None => {
                let rid = self.next_rid();
                self.machine_sid().with_rid(rid).ok_or(AuthError::Sid)?
            }
        };
        self.groups.insert(name.to_owned(), Group { sid });
        Ok((name.to_owned(), true))
    }

    /// Removes a group (names ignore case) and every user's membership of it; returns whether there was
    /// one.
    pub fn remove_group(&mut self, name: &str) -> bool {
        let Some(key) = self
            .groups
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
        else {
            return false;
        };
        self.groups.remove(&key);
        for user in self.users.values_mut() {
            user.groups.retain(|g| !g.eq_ignore_ascii_case(&key));
        }
        true
    }

    /// Removes a user (names ignore case); returns whether there was one. Its groups stay.
    pub fn remove_user(&mut self, name: &str) -> bool {
        let key = self
            .users
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned();
        key.is_some_and(|k| self.users.remove(&k).is_some())
    }

    /// The users, by name.
    pub fn users(&self) -> impl Iterator<Item = (&str, &User)> {
        self.users.iter().map(|(n, u)| (n.as_str(), u))
    }

    /// The groups, by name.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &Group)> {
        self.groups.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// These principals with `wanted` laid over them (what `bcs apply` does): its users and groups are
    /// added or replace those of the same name (names ignore case), but a user `wanted` gives without a
    /// password hash or NT hash keeps its own (exports carry no secrets); with `prune`, users and groups
    /// `wanted` does not name are removed. The machine SID stays unless `wanted` names one.
    pub fn merged_with(&self, wanted: Principals, prune: bool) -> Principals {
        let mut out = self.clone();
        if prune {
            out.users
                .retain(|n, _| wanted.users.keys().any(|w| w.eq_ignore_ascii_case(n)));
            out.groups
                .retain(|n, _| wanted.groups.keys().any(|w| w.eq_ignore_ascii_case(n)));
        }
        if wanted.machine_sid.is_some() {
            out.machine_sid = wanted.machine_sid;
        }
        for (name, group) in wanted.groups {
            out.groups.retain(|n, _| !n.eq_ignore_ascii_case(&name));
            out.groups.insert(name, group);
        }
        for (name, mut user) in wanted.users {
            let old = self.user(&name).map(|(_, u)| u.clone());
            if let Some(old) = old.filter(|o| o.sid == user.sid) {
                if user.password.is_none() && user.nt_hash.is_none() {
                    user.password = old.password;
                    user.nt_hash = old.nt_hash;
                }
            }
            out.users.retain(|n, _| !n.eq_ignore_ascii_case(&name));
            out.users.insert(name, user);
        }
        out
    }

    /// The same principals without secrets: no password hash, no NT hash.
    pub fn without_secrets(&self) -> Principals {
        let mut copy = self.clone();
        for user in copy.users.values_mut() {
            user.password = None;
            user.nt_hash = None;
        }
        copy
    }

    /// A user's SID, by the same names as [`Principals::user`]: what an SDDL ACE names the user by.
    ///
    /// ```
    /// # fn demo() -> Result<(), bits_compact::AuthError> {
    /// use bits_compact::{Password, Principals};
    ///
    /// let mut principals = Principals::default();
    /// principals.set_user("alice", &Password::from("correct horse"), &[])?;
    /// let alice = principals.user_sid("ALICE").expect("names ignore case");
    /// let sddl = format!("D:(A;;GR;;;{alice})");
    /// assert!(sddl.starts_with("D:(A;;GR;;;S-1-5-21-"));
    /// # Ok(()) }
    /// # demo().unwrap();
    /// ```
    pub fn user_sid(&self, name: &str) -> Option<&Sid> {
        self.user(name).map(|(_, user)| &user.sid)
    }

    /// A user by name: `name`, `DOMAIN\name` or `name@domain` (case-insensitive).
    pub fn user(&self, name: &str) -> Option<(&str, &User)> {
        if let Some((n, u)) = self
            .users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Some((n.as_str(), u));
        }
        let plain = name.rsplit('\\').next().unwrap_or(name);
        let plain = plain.split('@').next().unwrap_or(plain);
        self.users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(plain))
            .map(|(n, u)| (n.as_str(), u))
    }

    /// The user a client certificate names: `names` in priority order (UPN, e-mail, CN, thumbprint); the
    /// first name that some user lists wins.
    pub fn user_by_certificate(&self, names: &[&str]) -> Option<(&str, &User)> {
        names.iter().find_map(|name| {
            self.users
                .iter()
                .find(|(_, u)| u.certificates.iter().any(|c| c.eq_ignore_ascii_case(name)))
                .map(|(n, u)| (n.as_str(), u))
        })
    }

    /// The SIDs of a user's groups (group names ignore case).
    pub fn group_sids(&self, user: &User) -> Vec<Sid> {
        self.groups
            .iter()
            .filter(|(name, _)| user.groups.iter().any(|g| g.eq_ignore_ascii_case(name)))
            .map(|(_, g)| g.sid.clone())
            .collect()
    }
}

/// The SID of a group created under a well-known name: `BA` or `Administrators` (S-1-5-32-544), `BU` or
/// `Users` (S-1-5-32-545). Only these: a group must never give its members a system identity such as
/// `SY` (Local System) or `AN` (Anonymous) by its name alone.
fn well_known_group(name: &str) -> Option<Sid> {
    let code = match name.to_ascii_lowercase().as_str() {
        "administrators" | "ba" => "BA",
        "users" | "bu" => "BU",
        _ => return None,
    };
    match crate::authz::sid::alias(code, None) {
        Some(crate::authz::sid::Alias::Fixed(sid)) => Some(sid),
        _ => None,
    }
}

/// Why a principals file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalsError {
    /// Not TOML of the expected shape.
    #[error("not a principals file")]
    Toml(#[source] toml::de::Error),
    /// A SID that does not parse.
    #[error("{what}: invalid SID")]
    Sid {
        /// Whose SID (`user alice`, `group deploy`, `machine_sid`).
        what: String,
        /// What is wrong with it.
        #[source]
        source: crate::authz::SidError,
    },
    /// Two users, or two groups, whose names differ only in case.
    #[error("{kind} {name}: defined twice (names ignore case)")]
    Duplicate {
        /// `user` or `group`.
        kind: &'static str,
        /// The second name.
        name: String,
    },
    /// A user in a group the file does not define.
    #[error("user {user}: no group {group:?} in [groups]")]
    UnknownGroup {
        /// The user.
        user: String,
        /// The group.
        group: String,
    },
    /// A password hash or NT hash that is refused.
    #[error("user {user}: invalid password or nt_hash")]
    Hash {
        /// The user.
        user: String,
        /// What is wrong.
        #[source]
        source: HashError,
    },
}

impl TryFrom<FileForm> for Principals {
    type Error = PrincipalsError;

    fn try_from(form: FileForm) -> Result<Self, PrincipalsError> {
        let sid = |what: &str, s: &str| {
            s.parse::<Sid>().map_err(|source| PrincipalsError::Sid {
                what: what.to_owned(),
                source,
            })
        };
        let mut principals = Principals {
            machine_sid: form
                .machine_sid
                .as_deref()
                .map(|s| sid("machine_sid", s))
                .transpose()?,
            ..Default::default()
        };
        let duplicate = |names: Vec<&String>| {
            let mut seen = std::collections::HashSet::new();
            names
                .into_iter()
                .find(|n| !seen.insert(n.to_lowercase()))
                .cloned()
        };
        // Names compare case-insensitively, as Windows account names do: `Alice` and `alice` are one name.
        if let Some(name) = duplicate(form.users.keys().collect()) {
            return Err(PrincipalsError::Duplicate { kind: "user", name });
        }
        if let Some(name) = duplicate(form.groups.keys().collect()) {
            return Err(PrincipalsError::Duplicate {
                kind: "group",
                name,
            });
        }
        for (name, g) in form.groups {
            let group = Group {
                sid: sid(&format!("group {name}"), &g.sid)?,
            };
            principals.groups.insert(name, group);
        }
        for (name, u) in form.users {
            for g in &u.groups {
                if !principals.groups.keys().any(|k| k.eq_ignore_ascii_case(g)) {
                    return Err(PrincipalsError::UnknownGroup {
                        user: name,
                        group: g.clone(),
                    });
                }
            }
            let user =
                User {
                    sid: sid(&format!("user {name}"), &u.sid)?,
                    groups: u.groups,
                    password: u
                        .password
                        .map(|p| PasswordHash::parse(&p))
                        .transpose()
                        .map_err(|source| PrincipalsError::Hash {
                            user: name.clone(),
                            source,
                        })?,
                    nt_hash: u.nt_hash.map(|h| NtHash::parse(&h)).transpose().map_err(
                        |source| PrincipalsError::Hash {
                            user: name.clone(),
                            source,
                        },
                    )?,
                    certificates: u.certificates,
                };
            principals.users.insert(name, user);
        }
        Ok(principals)
    }
}

impl From<Principals> for FileForm {
    fn from(p: Principals) -> Self {
        FileForm {
            machine_sid: p.machine_sid.as_ref().map(ToString::to_string),
            users: p
                .users
                .iter()
                .map(|(name, u)| {
                    let form = UserForm {
                        sid: u.sid.to_string(),
                        groups: u.groups.clone(),
                        password: u.password.as_ref().map(|p| p.as_str().to_owned()),
                        nt_hash: u.nt_hash.as_ref().map(NtHash::to_hex),
                        certificates: u.certificates.clone(),
                    };
                    (name.clone(), form)
                })
                .collect(),
            groups: p
                .groups
                .iter()
                .map(|(name, g)| {
                    (
                        name.clone(),
                        GroupForm {
                            sid: g.sid.to_string(),
                        },
                    )
                })
                .collect(),
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookups() {
        let mut p = Principals::default();
        let pw = Password::from("correct horse");
        p.set_user("alice", &pw, &["deploy".into()]).unwrap();
        p.set_user("bob", &pw, &[]).unwrap();
        let text = p.to_toml();
        let again = Principals::parse(&text).unwrap();
        assert_eq!(again, p);
        let (name, alice) = again.user("CORP\\Alice").unwrap();
        assert_eq!(name, "alice");
        assert!(again.user("alice@corp.example").is_some());
        assert!(again.user("carol").is_none());
        let machine = p.clone().machine_sid();
        assert_eq!(
            alice.sid.sub_authorities()[..4],
            machine.sub_authorities()[..]
        );
        assert_eq!(again.group_sids(alice).len(), 1);
        assert!(alice.password.as_ref().unwrap().verify(&pw));
        assert!(!alice
            .password
            .as_ref()
            .unwrap()
            .verify(&Password::from("wrong")));
        assert_ne!(alice.sid, again.user("bob").unwrap().1.sid);
    }

    #[test]
    fn changing_a_password_keeps_groups_sid_and_certificates() {
        let mut p = Principals::default();
        let pw = Password::from("first");
        assert!(p
            .set_user("alice", &pw, &["deploy".into(), "ops".into()])
            .unwrap());
        p.users.get_mut("alice").unwrap().certificates = vec!["alice@corp.example".into()];
        let before = p.user("alice").unwrap().1.clone();
        // A new password, given as `Alice`, with no --group: the same user, nothing else lost.
        let new = Password::from("second");
        assert!(!p.set_user("Alice", &new, &[]).unwrap());
        assert_eq!(p.users.len(), 1);
        let (name, after) = p.user("alice").unwrap();
        assert_eq!(name, "alice");
        assert_eq!(after.sid, before.sid);
        assert_eq!(after.groups, before.groups);
        assert_eq!(after.certificates, before.certificates);
        assert!(after.password.as_ref().unwrap().verify(&new));
        assert!(!after.password.as_ref().unwrap().verify(&pw));
        // A group given adds to the others; `DEPLOY` is the existing `deploy`.
        p.set_user("alice", &new, &["DEPLOY".into(), "qa".into()])
            .unwrap();
        let after = p.user("alice").unwrap().1;
        assert_eq!(after.groups, ["deploy", "ops", "qa"]);
        assert_eq!(p.group_sids(after).len(), 3);
        assert_eq!(p.groups.len(), 3);
    }

    #[test]
    fn well_known_groups_groups_and_merging() {
        let mut p = Principals::default();
        assert_eq!(
            p.ensure_group("Administrators").unwrap(),
            ("Administrators".into(), true)
        );
        assert_eq!(
            p.ensure_group("administrators").unwrap(),
            ("Administrators".into(), false)
        );
        p.upsert_user(
            "root",
            None,
            &["BA".into(), "Deploy".into()],
            &["CN=ops".into()],
        )
        .unwrap();
        let sids: Vec<String> = p.groups().map(|(_, g)| g.sid.to_string()).collect();
        assert_eq!(
            sids.iter().filter(|s| *s == "S-1-5-32-544").count(),
            2,
            "{sids:?}"
        );
        let (_, root) = p.user("root").unwrap();
        assert!(root.password.is_none() && root.nt_hash.is_none());
        assert!(p.remove_group("deploy"));
        assert_eq!(p.user("root").unwrap().1.groups, ["BA"]);
        assert!(!p.remove_group("deploy"));

        // An export (no secrets) applied back keeps the hashes of the same user.
        p.upsert_user("alice", Some(&Password::from("pw".to_owned())), &[], &[])
            .unwrap();
        let exported = p.without_secrets();
        assert!(exported.user("alice").unwrap().1.password.is_none());
        let merged = p.merged_with(exported.clone(), false);
        assert_eq!(merged, p);
        let mut fewer = exported;
        assert!(fewer.remove_user("root"));
        let pruned = p.merged_with(fewer, true);
        assert!(pruned.user("root").is_none());
        assert!(pruned.user("alice").unwrap().1.password.is_some());
    }

    #[test]
    fn names_differing_only_in_case_are_one_name() {
        let text = "[users.alice]\nsid = \"S-1-5-21-1-2-3-1001\"\n[users.Alice]\nsid = \"S-1-5-21-1-2-3-1002\"\n";
        let e = Principals::parse(text).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
        let text = "[groups.ops]\nsid = \"S-1-5-21-1-2-3-1100\"\n[users.a]\nsid = \"S-1-5-21-1-2-3-1001\"\ngroups = [\"OPS\"]\n";
        let p = Principals::parse(text).unwrap();
        assert_eq!(p.group_sids(p.user("a").unwrap().1).len(), 1);
    }

    #[test]
    fn certificates_map_to_users_in_priority_order() {
        let text = r#"
[users.alice]
sid = "S-1-5-21-1-2-3-1001"
certificates = ["Alice Example"]
[users.bob]
sid = "S-1-5-21-1-2-3-1002"
certificates = ["alice@corp.example", "ABCDEF0123"]
"#;
        let p = Principals::parse(text).unwrap();
        // UPN before CN: the UPN's user wins even though another user lists the CN.
        let names = ["alice@corp.example", "Alice Example", "0000"];
        assert_eq!(p.user_by_certificate(&names).map(|(n, _)| n), Some("bob"));
        assert_eq!(
            p.user_by_certificate(&["nobody", "ALICE EXAMPLE"])
                .map(|(n, _)| n),
            Some("alice")
        );
        assert_eq!(
            p.user_by_certificate(&["abcdef0123"]).map(|(n, _)| n),
            Some("bob")
        );
        assert!(p.user_by_certificate(&["stranger"]).is_none());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(Principals::parse("users = 3").is_err());
        let e = Principals::parse("[users.a]\nsid = \"S-1-5-x\"").unwrap_err();
        assert!(e.to_string().contains("user a"), "{e}");
        let e = Principals::parse("[users.a]\nsid = \"S-1-5-21-1\"\ngroups = [\"g\"]").unwrap_err();
        assert!(e.to_string().contains("no group"), "{e}");
        let e =
            Principals::parse("[users.a]\nsid = \"S-1-5-21-1\"\npassword = \"plain\"").unwrap_err();
        assert!(e.to_string().contains("user a"), "{e}");
        assert!(Principals::parse("surprise = 1").is_err());
    }
}
