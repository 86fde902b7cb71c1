//! The generic [`ipc::Protocol`] view of each family: common constructors
//! produce the right variants and `common()` recognises the common replies.

use ipc::chardev::{Chardev, ChardevToCore, CoreToChardev};
use ipc::idle::{CoreToIdle, Idle, IdleToCore};
use ipc::migrate::{CoreToMigrate, Migrate, MigrateToCore};
use ipc::nbd::{CoreToNbd, Nbd, NbdToCore};
use ipc::vnc::{CoreToVnc, Vnc, VncToCore};
use ipc::{
    BrokerError, BrokerOp, BrokerReply, BrokerRequest, Channel, CommonToCore, Protocol,
    ServiceKind, TestAction,
};

#[test]
fn channel_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Channel>();
}

macro_rules! family {
    ($name:ident, $p:ty, $kind:expr, $to_svc:ident, $to_core:ident) => {
        #[test]
        fn $name() {
            assert_eq!(<$p>::KIND, $kind);
            let (core, svc) = Channel::pair().unwrap();
            core.send(&<$p>::ping(7)).unwrap();
            core.send(&<$p>::shutdown()).unwrap();
            core.send(&<$p>::test_trigger(TestAction::ForbiddenSyscall))
                .unwrap();
            core.send(&<$p>::broker_reply(BrokerReply {
                id: 2,
                result: Err(BrokerError {
                    errno: 1,
                    message: "no".into(),
                }),
            }))
            .unwrap();
            assert!(matches!(svc.recv::<$to_svc>().unwrap(), $to_svc::Ping(7)));
            assert!(matches!(svc.recv::<$to_svc>().unwrap(), $to_svc::Shutdown));
            assert!(matches!(
                svc.recv::<$to_svc>().unwrap(),
                $to_svc::TestTrigger(TestAction::ForbiddenSyscall)
            ));
            assert!(matches!(
                svc.recv::<$to_svc>().unwrap(),
                $to_svc::BrokerReply(BrokerReply { id: 2, .. })
            ));

            let req = BrokerRequest {
                id: 9,
                op: BrokerOp::Open {
                    path: "/x".into(),
                    write: false,
                },
            };
            svc.send(&$to_core::Ready).unwrap();
            svc.send(&$to_core::Pong(7)).unwrap();
            svc.send(&$to_core::StartupFailed {
                reason: "bad".into(),
            })
            .unwrap();
            svc.send(&$to_core::Broker(req.clone())).unwrap();
            let got: Vec<<$p as Protocol>::ToCore> = (0..4).map(|_| core.recv().unwrap()).collect();
            let common: Vec<_> = got.iter().map(<$p>::common).collect();
            assert_eq!(
                common,
                vec![
                    Some(CommonToCore::Ready),
                    Some(CommonToCore::Pong(7)),
                    Some(CommonToCore::StartupFailed("bad")),
                    Some(CommonToCore::Broker(&req)),
                ]
            );
        }
    };
}

family!(
    chardev_family,
    Chardev,
    ServiceKind::Chardev,
    CoreToChardev,
    ChardevToCore
);
family!(nbd_family, Nbd, ServiceKind::Nbd, CoreToNbd, NbdToCore);
family!(vnc_family, Vnc, ServiceKind::Vnc, CoreToVnc, VncToCore);
family!(
    migrate_family,
    Migrate,
    ServiceKind::Migrate,
    CoreToMigrate,
    MigrateToCore
);
family!(idle_family, Idle, ServiceKind::Idle, CoreToIdle, IdleToCore);

#[test]
fn chardev_specific_messages_are_not_common() {
    assert_eq!(Chardev::common(&ChardevToCore::ClientDisconnected), None);
    assert_eq!(Chardev::common(&ChardevToCore::Credit(5)), None);
}
