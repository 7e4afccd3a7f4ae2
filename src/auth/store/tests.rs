use super::*;

#[test]
fn etcds_buckets_carry_the_whole_store() {
    let store = sample_store();
    let [auth, roles, users] = store.etcd_buckets();
    assert_eq!(
        (auth.0.as_slice(), roles.0.as_slice(), users.0.as_slice()),
        (&b"auth"[..], &b"authRoles"[..], &b"authUsers"[..])
    );
    fn view(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect()
    }
    let (a, r, u) = (view(&auth.1), view(&roles.1), view(&users.1));
    assert_eq!(AuthStore::from_etcd_buckets(&a, &u, &r), Ok(store));
    assert_eq!(
        AuthStore::from_etcd_buckets(&[], &[], &[]),
        Ok(AuthStore::new())
    );
    // A user filed under another name is refused.
    let moved: Vec<(&[u8], &[u8])> = u.iter().map(|(_, v)| (&b"mallory"[..], *v)).collect();
    assert!(AuthStore::from_etcd_buckets(&a, &moved, &r).is_err());
}

fn add_user(name: &str) -> AuthChange {
    AuthChange::UserAdd {
        name: name.into(),
        password_hash: Some(Bytes::from_static(b"$2a$10$hash")),
        no_password: false,
    }
}

fn grant(user: &str, role: &str) -> AuthChange {
    AuthChange::UserGrantRole {
        user: user.into(),
        role: role.into(),
    }
}

fn permission(perm_type: PermType, key: &'static [u8], end: &'static [u8]) -> Permission {
    Permission {
        perm_type,
        key: Bytes::from_static(key),
        range_end: Bytes::from_static(end),
    }
}

#[test]
fn enabling_needs_root_with_the_root_role_and_root_is_then_protected() {
    let mut store = AuthStore::new();
    assert_eq!(
        store.apply(&AuthChange::Enable),
        Err(AuthError::RootUserNotExist)
    );
    store.apply(&add_user("root")).expect("root");
    assert_eq!(
        store.apply(&AuthChange::Enable),
        Err(AuthError::RootRoleNotExist)
    );
    store
        .apply(&grant("root", "root"))
        .expect("the root role needs no role entry");
    let before = store.revision();
    store.apply(&AuthChange::Enable).expect("enable");
    assert!(store.enabled());
    assert_eq!(store.revision(), before, "enabling changes no permission");
    store.apply(&AuthChange::Enable).expect("twice is fine");
    assert_eq!(
        store.apply(&AuthChange::UserDelete {
            name: "root".into()
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        store.apply(&AuthChange::UserRevokeRole {
            name: "root".into(),
            role: "root".into()
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        store.apply(&AuthChange::RoleDelete {
            name: "root".into()
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    store.apply(&AuthChange::Disable).expect("disable");
    assert!(!store.enabled());
    assert_eq!(store.revision(), before + 1);
    store
        .apply(&AuthChange::UserDelete {
            name: "root".into(),
        })
        .expect("root may go while auth is off");
}

#[test]
fn names_roles_and_permissions_follow_etcds_rules() {
    let mut store = AuthStore::new();
    assert_eq!(store.apply(&add_user("")), Err(AuthError::UserEmpty));
    store.apply(&add_user("alice")).expect("alice");
    assert_eq!(
        store.apply(&add_user("alice")),
        Err(AuthError::UserAlreadyExist)
    );
    assert_eq!(
        store.apply(&grant("bob", "r")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        store.apply(&grant("alice", "r")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        store.apply(&AuthChange::RoleAdd { name: "".into() }),
        Err(AuthError::RoleEmpty)
    );
    store
        .apply(&AuthChange::RoleAdd { name: "r".into() })
        .expect("r");
    assert_eq!(
        store.apply(&AuthChange::RoleAdd { name: "r".into() }),
        Err(AuthError::RoleAlreadyExist)
    );
    store.apply(&grant("alice", "r")).expect("grant");
    let revision = store.revision();
    store
        .apply(&grant("alice", "r"))
        .expect("a second grant is ignored");
    assert_eq!(store.revision(), revision);
    let read_dir = permission(PermType::Read, b"dir/", b"dir0");
    store
        .apply(&AuthChange::RoleGrantPermission {
            name: "r".into(),
            permission: read_dir.clone(),
        })
        .expect("grant permission");
    let alice = store.permissions("alice").expect("alice");
    assert!(alice.may_read(&Bytes::from_static(b"dir/x"), &Bytes::new()));
    assert!(!alice.may_write(&Bytes::from_static(b"dir/x"), &Bytes::new()));
    // The same range again updates its type.
    store
        .apply(&AuthChange::RoleGrantPermission {
            name: "r".into(),
            permission: permission(PermType::ReadWrite, b"dir/", b"dir0"),
        })
        .expect("update");
    assert_eq!(store.role_get("r").expect("r").len(), 1);
    assert!(store
        .permissions("alice")
        .expect("alice")
        .may_write(&Bytes::from_static(b"dir/x"), &Bytes::new()));
    assert_eq!(
        store.apply(&AuthChange::RoleGrantPermission {
            name: "r".into(),
            permission: permission(PermType::Read, b"b", b"a"),
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        store.apply(&AuthChange::RoleRevokePermission {
            role: "r".into(),
            key: Bytes::from_static(b"dir/"),
            range_end: Bytes::new(),
        }),
        Err(AuthError::PermissionNotGranted)
    );
    store
        .apply(&AuthChange::RoleRevokePermission {
            role: "r".into(),
            key: Bytes::from_static(b"dir/"),
            range_end: Bytes::from_static(b"dir0"),
        })
        .expect("revoke");
    assert!(!store
        .permissions("alice")
        .expect("alice")
        .may_read(&Bytes::from_static(b"dir/x"), &Bytes::new()));
    assert_eq!(
        store.apply(&AuthChange::UserRevokeRole {
            name: "alice".into(),
            role: "other".into()
        }),
        Err(AuthError::RoleNotGranted)
    );
    // Deleting a role takes it from its users.
    store
        .apply(&AuthChange::RoleDelete { name: "r".into() })
        .expect("delete");
    assert_eq!(store.user_get("alice"), Ok(Vec::new()));
    assert_eq!(store.role_get("r"), Err(AuthError::RoleNotFound));
}

#[test]
fn a_refused_change_changes_nothing() {
    let mut store = AuthStore::new();
    store.apply(&add_user("root")).expect("root");
    let before = store.clone();
    for change in [
        add_user("root"),
        grant("root", "missing"),
        AuthChange::RoleDelete {
            name: "missing".into(),
        },
        AuthChange::UserChangePassword {
            name: "missing".into(),
            password_hash: None,
        },
        AuthChange::Enable,
    ] {
        assert!(store.apply(&change).is_err(), "{change:?}");
        assert_eq!(store, before, "{change:?}");
    }
}

#[test]
fn the_store_survives_encoding_and_bad_bytes_are_refused() {
    let mut store = AuthStore::new();
    for change in [
        add_user("root"),
        grant("root", "root"),
        AuthChange::RoleAdd {
            name: "root".into(),
        },
        AuthChange::RoleAdd {
            name: "reader".into(),
        },
        AuthChange::RoleGrantPermission {
            name: "reader".into(),
            permission: permission(PermType::Read, b"a", b"\0"),
        },
        AuthChange::RoleGrantPermission {
            name: "reader".into(),
            permission: permission(PermType::ReadWrite, b"dir/", b"dir0"),
        },
        add_user("alice"),
        grant("alice", "reader"),
        AuthChange::UserAdd {
            name: "cert".into(),
            password_hash: None,
            no_password: true,
        },
        AuthChange::Enable,
    ] {
        store.apply(&change).expect("change");
    }
    let mut bytes = Vec::new();
    store.encode(&mut bytes);
    assert_eq!(AuthStore::decode(&bytes), Ok(store.clone()));
    let mut empty = Vec::new();
    AuthStore::new().encode(&mut empty);
    assert_eq!(AuthStore::decode(&empty), Ok(AuthStore::new()));
    // Every truncation and every flipped byte is refused or read as some valid store;
    // none panics.
    for cut in 0..bytes.len() {
        assert!(AuthStore::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x5a;
        let _ = AuthStore::decode(&flipped);
    }
    let mut wrong = bytes.clone();
    wrong[0] = 9;
    assert_eq!(AuthStore::decode(&wrong), Err(AuthDecodeError::Format(9)));
}

#[test]
fn passwords_and_no_password_users() {
    let mut store = AuthStore::new();
    store
        .apply(&AuthChange::UserAdd {
            name: "cert-only".into(),
            password_hash: Some(Bytes::from_static(b"ignored")),
            no_password: true,
        })
        .expect("add");
    store.apply(&add_user("root")).expect("root");
    assert_eq!(store.password_hash("root"), Err(AuthError::AuthNotEnabled));
    store.apply(&grant("root", "root")).expect("grant");
    store.apply(&AuthChange::Enable).expect("enable");
    assert_eq!(
        store.password_hash("root"),
        Ok(Bytes::from_static(b"$2a$10$hash"))
    );
    assert_eq!(store.password_hash("nobody"), Err(AuthError::AuthFailed));
    assert_eq!(
        store.password_hash("cert-only"),
        Err(AuthError::NoPasswordUser)
    );
    store
        .apply(&AuthChange::UserChangePassword {
            name: "root".into(),
            password_hash: Some(Bytes::from_static(b"$2a$10$new")),
        })
        .expect("change");
    assert_eq!(
        store.password_hash("root"),
        Ok(Bytes::from_static(b"$2a$10$new"))
    );
    assert!(store.is_root("root") && !store.is_root("cert-only"));
}
