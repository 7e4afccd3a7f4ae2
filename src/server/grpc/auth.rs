//! etcd's `etcdserverpb.Auth` service: enabling auth, authenticating, users and roles.

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, on_core};
use crate::api::etcd;
use crate::auth::request::{AuthKind, AuthRequest, AuthResponse};
use crate::server::admission::{self, CallMeta};

/// etcd's `etcdserverpb.Auth` service: every call is an [`AuthRequest`] answered by the
/// consensus core (`Node::auth`), as the native protocol's are.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthService;

/// Runs `request` on the core and shapes its answer into `T`.
async fn auth_call<T: Send + 'static>(
    meta: CallMeta,
    request: AuthRequest,
    shape: impl FnOnce(pb::ResponseHeader, AuthResponse) -> T + Send + 'static,
) -> Result<tonic::Response<T>, Status> {
    on_core(move |node, limits| async move {
        let admitted = crate::api::native::Request::Auth(request);
        admission::admit(&node, limits, &meta, &admitted, None).await?;
        let crate::api::native::Request::Auth(request) = admitted else {
            return Err(super::mismatched("auth"));
        };
        let mut answer = node.auth(&meta.credentials, request).await?;
        crate::server::stamp_header(&mut answer.header, &node);
        let header = etcd::header(answer.header);
        Ok(shape(header, answer))
    })
    .await
    .map(tonic::Response::new)
}

fn auth_request(kind: AuthKind, name: String) -> AuthRequest {
    AuthRequest {
        name,
        ..AuthRequest::new(kind)
    }
}

fn to_etcd_permission(
    permission: crate::auth::Permission,
) -> lode_protocol::etcd::authpb::Permission {
    lode_protocol::etcd::authpb::Permission {
        perm_type: permission.perm_type.to_i32(),
        key: permission.key,
        range_end: permission.range_end,
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(
        &self,
        request: tonic::Request<pb::AuthEnableRequest>,
    ) -> Result<tonic::Response<pb::AuthEnableResponse>, Status> {
        let meta = call_meta(&request);
        auth_call(meta, AuthRequest::new(AuthKind::Enable), |header, _| {
            pb::AuthEnableResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn auth_disable(
        &self,
        request: tonic::Request<pb::AuthDisableRequest>,
    ) -> Result<tonic::Response<pb::AuthDisableResponse>, Status> {
        let meta = call_meta(&request);
        auth_call(meta, AuthRequest::new(AuthKind::Disable), |header, _| {
            pb::AuthDisableResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn auth_status(
        &self,
        request: tonic::Request<pb::AuthStatusRequest>,
    ) -> Result<tonic::Response<pb::AuthStatusResponse>, Status> {
        let meta = call_meta(&request);
        auth_call(
            meta,
            AuthRequest::new(AuthKind::Status),
            |header, answer| pb::AuthStatusResponse {
                header: Some(header),
                enabled: answer.enabled,
                auth_revision: answer.auth_revision,
            },
        )
        .await
    }

    async fn authenticate(
        &self,
        request: tonic::Request<pb::AuthenticateRequest>,
    ) -> Result<tonic::Response<pb::AuthenticateResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            ..auth_request(AuthKind::Authenticate, request.name)
        };
        auth_call(meta, call, |header, answer| pb::AuthenticateResponse {
            header: Some(header),
            token: answer.token,
        })
        .await
    }

    async fn user_add(
        &self,
        request: tonic::Request<pb::AuthUserAddRequest>,
    ) -> Result<tonic::Response<pb::AuthUserAddResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            no_password: request.options.is_some_and(|o| o.no_password),
            ..auth_request(AuthKind::UserAdd, request.name)
        };
        auth_call(meta, call, |header, _| pb::AuthUserAddResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_get(
        &self,
        request: tonic::Request<pb::AuthUserGetRequest>,
    ) -> Result<tonic::Response<pb::AuthUserGetResponse>, Status> {
        let meta = call_meta(&request);
        let call = auth_request(AuthKind::UserGet, request.into_inner().name);
        auth_call(meta, call, |header, answer| pb::AuthUserGetResponse {
            header: Some(header),
            roles: answer.names,
        })
        .await
    }

    async fn user_list(
        &self,
        request: tonic::Request<pb::AuthUserListRequest>,
    ) -> Result<tonic::Response<pb::AuthUserListResponse>, Status> {
        let meta = call_meta(&request);
        auth_call(
            meta,
            AuthRequest::new(AuthKind::UserList),
            |header, answer| pb::AuthUserListResponse {
                header: Some(header),
                users: answer.names,
            },
        )
        .await
    }

    async fn user_delete(
        &self,
        request: tonic::Request<pb::AuthUserDeleteRequest>,
    ) -> Result<tonic::Response<pb::AuthUserDeleteResponse>, Status> {
        let meta = call_meta(&request);
        let call = auth_request(AuthKind::UserDelete, request.into_inner().name);
        auth_call(meta, call, |header, _| pb::AuthUserDeleteResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_change_password(
        &self,
        request: tonic::Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<tonic::Response<pb::AuthUserChangePasswordResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            ..auth_request(AuthKind::UserChangePassword, request.name)
        };
        auth_call(meta, call, |header, _| pb::AuthUserChangePasswordResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_grant_role(
        &self,
        request: tonic::Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<tonic::Response<pb::AuthUserGrantRoleResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            role: request.role,
            ..auth_request(AuthKind::UserGrantRole, request.user)
        };
        auth_call(meta, call, |header, _| pb::AuthUserGrantRoleResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_revoke_role(
        &self,
        request: tonic::Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<tonic::Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            role: request.role,
            ..auth_request(AuthKind::UserRevokeRole, request.name)
        };
        auth_call(meta, call, |header, _| pb::AuthUserRevokeRoleResponse {
            header: Some(header),
        })
        .await
    }

    async fn role_add(
        &self,
        request: tonic::Request<pb::AuthRoleAddRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleAddResponse>, Status> {
        let meta = call_meta(&request);
        let call = auth_request(AuthKind::RoleAdd, request.into_inner().name);
        auth_call(meta, call, |header, _| pb::AuthRoleAddResponse {
            header: Some(header),
        })
        .await
    }

    async fn role_get(
        &self,
        request: tonic::Request<pb::AuthRoleGetRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleGetResponse>, Status> {
        let meta = call_meta(&request);
        let call = auth_request(AuthKind::RoleGet, request.into_inner().role);
        auth_call(meta, call, |header, answer| pb::AuthRoleGetResponse {
            header: Some(header),
            perm: answer
                .permissions
                .into_iter()
                .map(to_etcd_permission)
                .collect(),
        })
        .await
    }

    async fn role_list(
        &self,
        request: tonic::Request<pb::AuthRoleListRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleListResponse>, Status> {
        let meta = call_meta(&request);
        auth_call(
            meta,
            AuthRequest::new(AuthKind::RoleList),
            |header, answer| pb::AuthRoleListResponse {
                header: Some(header),
                roles: answer.names,
            },
        )
        .await
    }

    async fn role_delete(
        &self,
        request: tonic::Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleDeleteResponse>, Status> {
        let meta = call_meta(&request);
        let call = auth_request(AuthKind::RoleDelete, request.into_inner().role);
        auth_call(meta, call, |header, _| pb::AuthRoleDeleteResponse {
            header: Some(header),
        })
        .await
    }

    async fn role_grant_permission(
        &self,
        request: tonic::Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let permission = match request.perm {
            None => None,
            Some(perm) => Some(crate::auth::Permission {
                perm_type: crate::auth::PermType::from_i32(perm.perm_type).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "etcdserver: unknown permission type {}",
                        perm.perm_type
                    ))
                })?,
                key: perm.key,
                range_end: perm.range_end,
            }),
        };
        let call = AuthRequest {
            permission,
            ..auth_request(AuthKind::RoleGrantPermission, request.name)
        };
        auth_call(meta, call, |header, _| {
            pb::AuthRoleGrantPermissionResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn role_revoke_permission(
        &self,
        request: tonic::Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            key: request.key,
            range_end: request.range_end,
            ..auth_request(AuthKind::RoleRevokePermission, request.role)
        };
        auth_call(meta, call, |header, _| {
            pb::AuthRoleRevokePermissionResponse {
                header: Some(header),
            }
        })
        .await
    }
}
