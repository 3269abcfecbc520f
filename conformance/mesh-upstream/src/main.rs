//! Runs the pinned upstream Mesh Security contracts (osmosis-labs/mesh-security, read from
//! `../shared/upstream/mesh-security`) in cw-multi-test and speaks JSON lines.
//!
//! One operation per stdin line, one reply per stdout line:
//! `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.
//!
//! Two multi-test apps stand in for the two chains, with the harness as the IBC relayer:
//! * provider: the vault (`mesh_vault::mock::VaultMock`, upstream's bank-funds vault that its own
//!   multitests use; the production `VaultContract` moves funds with chain-specific custom
//!   messages) and `external-staking`;
//! * consumer: `simple-price-feed`, `converter` and the `virtual-staking` it instantiates.
//!
//! IBC is not in cw-multi-test, so the harness does what a relayer plus acks would: after a
//! `stake_remote` / `unstake` it calls the upstream test ack entry points
//! (`test_commit_stake`, `test_commit_unstake`) and delivers the provider packet to the converter
//! through its test entry points (`test_stake`, `test_unstake`, `test_burn`). A consumer slash
//! is delivered as a real `ConsumerPacket::ValsetUpdate` to external-staking's own
//! `ibc_packet_receive` (on the contract's storage; its messages then run as the contract;
//! the storage is restored if they fail, as a failed packet would be).
//!
//! Names: every string in an op equal to a registered name (users, `vault`,
//! `external_staking`, `converter`, `virtual_staking`, `price_feed`) is replaced by its bech32
//! address, and addresses in replies are turned back into names.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use anyhow::{anyhow, bail, Context, Result};
use cosmwasm_std::testing::{MockApi, MockQuerier};
use cosmwasm_std::{
    coin, to_json_binary, Addr, Api, BankMsg, Binary, CosmosMsg, Decimal, DepsMut, Empty, Env, IbcEndpoint,
    IbcPacket, IbcPacketReceiveMsg, IbcTimeout, Order, QuerierWrapper, Timestamp,
    TransactionInfo, ContractInfo, Uint128,
};
use cw_multi_test::{
    App, AppBuilder, AppResponse, BankSudo, BasicApp, Executor, StakingInfo, SudoMsg,
};
use mesh_bindings::{VirtualStakeCustomMsg, VirtualStakeCustomQuery};
use serde_json::{json, Map, Value};

type ConsumerApp = BasicApp<VirtualStakeCustomMsg, VirtualStakeCustomQuery>;

const OWNER: &str = "owner";
const RELAYER: &str = "relayer";

struct World {
    provider: App,
    consumer: ConsumerApp,
    api: MockApi,
    names: BTreeMap<String, String>,
    addrs: BTreeMap<String, String>,
    denom: String,
    dsign: Decimal,
    offline: Decimal,
    users: Vec<String>,
    vault: Addr,
    ext: Addr,
    converter: Addr,
    vstaking: Addr,
    packet_seq: u64,
    /// Run virtual-staking's (test) epoch after every packet, as the model rebalances per change.
    auto_epoch: bool,
}

fn s(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("missing string field `{key}`"))
}

fn u(v: &Value, key: &str) -> Result<u128> {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_u64().map(u128::from).ok_or_else(|| anyhow!("`{key}` not a u64")),
        Some(Value::String(t)) => t.parse().with_context(|| format!("`{key}` not an integer")),
        _ => bail!("missing integer field `{key}`"),
    }
}

fn dec(v: &Value, key: &str, default: &str) -> Result<Decimal> {
    let raw = v.get(key).and_then(Value::as_str).unwrap_or(default);
    raw.parse::<Decimal>().map_err(|e| anyhow!("`{key}`: {e}"))
}

fn events_json(resp: &AppResponse) -> Value {
    Value::Array(
        resp.events
            .iter()
            .map(|e| {
                json!({"type": e.ty, "attributes": e.attributes.iter()
                    .map(|a| json!({"key": a.key, "value": a.value})).collect::<Vec<_>>()})
            })
            .collect(),
    )
}

impl World {
    fn new(cfg: &Value) -> Result<Self> {
        let denom = cfg.get("denom").and_then(Value::as_str).unwrap_or("sat").to_owned();
        let local_denom = cfg.get("local_denom").and_then(Value::as_str).unwrap_or("ustake").to_owned();
        let rewards_denom = cfg.get("rewards_denom").and_then(Value::as_str).unwrap_or(&local_denom).to_owned();
        let unbonding_period = u(cfg, "unbonding_period").unwrap_or(100) as u64;
        let dsign = dec(cfg, "slash_ratio_dsign", "0.1")?;
        let offline = dec(cfg, "slash_ratio_offline", "0")?;
        let price = dec(cfg, "price", "1")?;
        let discount = dec(cfg, "discount", "0")?;
        let time = u(cfg, "time").unwrap_or(1_000_000) as u64;
        let height = u(cfg, "height").unwrap_or(100) as u64;

        let api = MockApi::default();
        let mut provider = App::default();
        let ld = local_denom.clone();
        let mut consumer: ConsumerApp = AppBuilder::new_custom().build(move |router, _api, storage| {
            router
                .staking
                .setup(storage, StakingInfo { bonded_denom: ld.clone(), unbonding_time: 60, apr: Decimal::percent(10) })
                .unwrap();
        });
        for app_block in [&mut provider as &mut dyn BlockSet, &mut consumer as &mut dyn BlockSet] {
            app_block.set(height, time);
        }
        let owner = api.addr_make(OWNER);

        let vault_code = provider.store_code(Box::new(mesh_vault::mock::VaultMock::new()));
        let ext_code = provider.store_code(Box::new(mesh_external_staking::contract::ExternalStakingContract::new()));
        let vault = provider
            .instantiate_contract(vault_code, owner.clone(), &json!({"denom": denom, "local_staking": null}), &[], "vault", None)
            .map_err(|e| anyhow!("vault instantiate: {e:#}"))?;
        let ext = provider
            .instantiate_contract(
                ext_code,
                owner.clone(),
                &json!({
                    "denom": denom, "rewards_denom": rewards_denom, "vault": vault.to_string(),
                    "unbonding_period": unbonding_period,
                    "remote_contact": {"connection_id": "connection-2", "port_id": "wasm-consumer"},
                    "slash_ratio": {"double_sign": dsign.to_string(), "offline": offline.to_string()},
                }),
                &[],
                "external-staking",
                None,
            )
            .map_err(|e| anyhow!("external-staking instantiate: {e:#}"))?;

        let feed_code = consumer.store_code(Box::new(mesh_simple_price_feed::contract::SimplePriceFeedContract::new()));
        let vs_code = consumer.store_code(Box::new(mesh_virtual_staking::contract::VirtualStakingContract::new()));
        let conv_code = consumer.store_code(Box::new(mesh_converter::contract::ConverterContract::new()));
        let feed = consumer
            .instantiate_contract(feed_code, owner.clone(), &json!({"native_per_foreign": price.to_string(), "owner": null}), &[], "price-feed", None)
            .map_err(|e| anyhow!("price feed instantiate: {e:#}"))?;
        let converter = consumer
            .instantiate_contract(
                conv_code,
                owner.clone(),
                &json!({
                    "price_feed": feed.to_string(), "discount": discount.to_string(), "remote_denom": denom,
                    "virtual_staking_code_id": vs_code, "tombstoned_unbond_enable": true,
                    "admin": owner.to_string(), "max_retrieve": 50,
                }),
                &[],
                "converter",
                Some(owner.to_string()),
            )
            .map_err(|e| anyhow!("converter instantiate: {e:#}"))?;
        let cfg_reply: Value = consumer
            .wrap()
            .query_wasm_smart(converter.clone(), &json!({"config": {}}))
            .map_err(|e| anyhow!("converter config: {e:#}"))?;
        let vstaking = Addr::unchecked(s(&cfg_reply, "virtual_staking")?);

        let mut w = World {
            provider,
            consumer,
            api,
            names: BTreeMap::new(),
            addrs: BTreeMap::new(),
            denom,
            dsign,
            offline,
            users: vec![],
            vault,
            ext,
            converter,
            vstaking,
            packet_seq: 0,
            auto_epoch: cfg.get("auto_epoch").and_then(Value::as_bool).unwrap_or(true),
        };
        for (name, addr) in [
            ("vault", w.vault.to_string()),
            ("external_staking", w.ext.to_string()),
            ("converter", w.converter.to_string()),
            ("virtual_staking", w.vstaking.to_string()),
            (OWNER, owner.to_string()),
        ] {
            w.register(name, &addr);
        }
        if let Some(vals) = cfg.get("validators").and_then(Value::as_array) {
            for v in vals {
                let v = v.as_str().ok_or_else(|| anyhow!("validators: strings"))?.to_owned();
                w.activate(&v)?;
            }
        }
        Ok(w)
    }

    fn register(&mut self, name: &str, addr: &str) {
        self.names.insert(name.to_owned(), addr.to_owned());
        self.addrs.insert(addr.to_owned(), name.to_owned());
    }

    fn user(&mut self, name: &str) -> Addr {
        if let Some(a) = self.names.get(name) {
            return Addr::unchecked(a);
        }
        let addr = self.api.addr_make(name);
        self.register(name, addr.as_str());
        self.users.push(name.to_owned());
        addr
    }

    fn to_addrs(&self, v: &Value) -> Value {
        match v {
            Value::String(t) => Value::String(self.names.get(t).cloned().unwrap_or_else(|| t.clone())),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.to_addrs(x)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), self.to_addrs(x))).collect()),
            other => other.clone(),
        }
    }

    fn to_names(&self, v: &Value) -> Value {
        match v {
            Value::String(t) => Value::String(self.addrs.get(t).cloned().unwrap_or_else(|| t.clone())),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.to_names(x)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), self.to_names(x))).collect()),
            other => other.clone(),
        }
    }

    fn contract(&self, name: &str) -> Result<(bool, Addr)> {
        Ok(match name {
            "vault" => (true, self.vault.clone()),
            "external_staking" => (true, self.ext.clone()),
            "converter" => (false, self.converter.clone()),
            "virtual_staking" => (false, self.vstaking.clone()),
            other => bail!("unknown contract `{other}`"),
        })
    }

    fn exec_provider(&mut self, sender: &Addr, contract: &Addr, msg: &Value, funds: &[cosmwasm_std::Coin]) -> Result<AppResponse> {
        self.provider
            .execute_contract(sender.clone(), contract.clone(), msg, funds)
            .map_err(|e| anyhow!("{e:#}"))
    }

    fn exec_consumer(&mut self, msg: &Value) -> Result<AppResponse> {
        let owner = Addr::unchecked(&self.names[OWNER]);
        let conv = self.converter.clone();
        let resp = self
            .consumer
            .execute_contract(owner.clone(), conv, msg, &[])
            .map_err(|e| anyhow!("consumer: {e:#}"))?;
        if self.auto_epoch {
            self.epoch()?;
        }
        Ok(resp)
    }

    fn epoch(&mut self) -> Result<AppResponse> {
        let owner = Addr::unchecked(&self.names[OWNER]);
        let vs = self.vstaking.clone();
        self.consumer
            .execute_contract(owner, vs, &json!({"test_handle_epoch": {}}), &[])
            .map_err(|e| anyhow!("epoch: {e:#}"))
    }

    fn query(&self, contract: &str, msg: &Value) -> Result<Value> {
        let (provider, addr) = self.contract(contract)?;
        let msg = self.to_addrs(msg);
        let out: Value = if provider {
            self.provider.wrap().query_wasm_smart(addr, &msg)
        } else {
            self.consumer.wrap().query_wasm_smart(addr, &msg)
        }
        .map_err(|e| anyhow!("{e:#}"))?;
        Ok(self.to_names(&out))
    }

    fn activate(&mut self, validator: &str) -> Result<AppResponse> {
        let b = self.provider.block_info();
        let msg = json!({"test_set_active_validator": {
            "validator": {"valoper": validator, "pub_key": "mock-pubkey"},
            "height": b.height, "time": b.time.seconds()}});
        let ext = self.ext.clone();
        let relayer = self.api.addr_make(RELAYER);
        self.exec_provider(&relayer, &ext, &msg, &[])
    }

    /// The newest pending external-staking tx (of `variant`, e.g. `in_flight_remote_staking`, if given).
    fn last_ext_tx_of(&self, variant: Option<&str>) -> Result<u64> {
        let txs: Value = self
            .provider
            .wrap()
            .query_wasm_smart(self.ext.clone(), &json!({"all_pending_txs_desc": {"limit": 1000}}))
            .map_err(|e| anyhow!("{e:#}"))?;
        let inner = txs["txs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tx| tx.as_object().and_then(|o| o.iter().next()))
            .find(|(k, _)| variant.is_none_or(|v| v == k.as_str()))
            .map(|(_, inner)| inner)
            .ok_or_else(|| anyhow!("no pending tx"))?;
        inner["id"].as_u64().ok_or_else(|| anyhow!("bad tx id"))
    }

    fn last_ext_tx(&self) -> Result<u64> {
        self.last_ext_tx_of(None)
    }

    fn stake_high(&self, user: &str, validator: &str) -> Result<u128> {
        let st: Value = self
            .provider
            .wrap()
            .query_wasm_smart(self.ext.clone(), &json!({"stake": {"user": self.names[user], "validator": validator}}))
            .map_err(|e| anyhow!("{e:#}"))?;
        Ok(st["stake"]["h"].as_str().unwrap_or("0").parse()?)
    }

    /// Provider packets that a consumer would get for `burn_virtual_stake` calls in `resp`.
    fn relay_burns(&mut self, resp: &AppResponse) -> Result<Vec<Value>> {
        let ext = self.ext.to_string();
        let mut packets = vec![];
        for e in &resp.events {
            if e.ty != "wasm" {
                continue;
            }
            let attr = |k: &str| e.attributes.iter().find(|a| a.key == k).map(|a| a.value.clone());
            if attr("_contract_address").as_deref() != Some(ext.as_str())
                || attr("action").as_deref() != Some("burn_virtual_stake")
            {
                continue;
            }
            let vals: Vec<String> = attr("validators").unwrap_or_default().split(", ").filter(|v| !v.is_empty()).map(str::to_owned).collect();
            let amount: u128 = attr("amount").unwrap_or_default().parse().unwrap_or(0);
            if vals.is_empty() || amount == 0 {
                continue;
            }
            let msg = json!({"test_burn": {"validators": vals, "burn": coin(amount, &self.denom)}});
            let r = self.exec_consumer(&msg)?;
            packets.push(json!({"burn": {"validators": vals, "amount": amount.to_string()}, "events": events_json(&r)}));
        }
        Ok(packets)
    }

    fn with_events(&self, resp: &AppResponse, extra: Value) -> Value {
        let mut out = Map::new();
        out.insert("events".into(), self.to_names(&events_json(resp)));
        if let Value::Object(o) = extra {
            out.extend(o);
        }
        Value::Object(out)
    }

    /// Deliver a consumer `ValsetUpdate` (slash + tombstone/jail) to external-staking's
    /// `ibc_packet_receive`, then run its messages as the contract.
    fn slash(&mut self, op: &Value) -> Result<Value> {
        let validator = s(op, "validator")?;
        let kind = op.get("kind").and_then(Value::as_str).unwrap_or("double_sign");
        let ratio = match kind {
            "double_sign" => self.dsign,
            "offline" => self.offline,
            other => bail!("unknown slash kind `{other}`"),
        };
        let block = self.provider.block_info();
        let infraction_height = u(op, "infraction_height").map(|x| x as u64).unwrap_or(block.height);
        let infraction_time = u(op, "infraction_time").map(|x| x as u64).unwrap_or(0);
        // The consumer reports the amount it slashed; on a faithful consumer that is the
        // nominal ratio times the stake it holds for this validator (in provider units).
        let mut before_total = Uint128::zero();
        for user in self.users.clone() {
            before_total += Uint128::new(self.stake_high(&user, &validator)?);
        }
        let slash_amount = match u(op, "slash_amount") {
            Ok(a) => a,
            Err(_) => {
                let mut total = Uint128::zero();
                for user in self.users.clone() {
                    total += Uint128::new(self.stake_high(&user, &validator)?);
                }
                total.mul_floor(ratio).u128()
            }
        };
        let (tombstoned, jailed) = if kind == "double_sign" { (vec![validator.clone()], vec![]) } else { (vec![], vec![validator.clone()]) };
        let packet = json!({"valset_update": {
            "height": block.height, "time": block.time.seconds(),
            "additions": [], "removals": [], "updated": [], "jailed": jailed, "unjailed": [],
            "tombstoned": tombstoned,
            "slashed": [{"address": validator, "infraction_height": infraction_height,
                         "infraction_time": infraction_time, "power": 0,
                         "slash_amount": coin(slash_amount, &self.denom), "slash_ratio": ratio.to_string()}],
        }});
        self.packet_seq += 1;
        let endpoint = |p: &str, c: &str| IbcEndpoint { port_id: p.into(), channel_id: c.into() };
        let msg = IbcPacketReceiveMsg::new(
            IbcPacket::new(
                to_json_binary(&packet)?,
                endpoint("wasm-consumer", "channel-7"),
                endpoint("wasm-provider", "channel-172"),
                self.packet_seq,
                IbcTimeout::with_timestamp(Timestamp::from_seconds(block.time.seconds() + 3600)),
            ),
            self.api.addr_make(RELAYER),
        );
        let env = Env {
            block: block.clone(),
            transaction: Some(TransactionInfo { index: 0 }),
            contract: ContractInfo { address: self.ext.clone() },
        };
        let ext = self.ext.clone();
        let saved: Vec<(Vec<u8>, Vec<u8>)> = self.provider.contract_storage(&ext).range(None, None, Order::Ascending).collect();
        let api = self.api;
        let result = {
            let mut storage = self.provider.contract_storage_mut(&ext);
            let querier: MockQuerier<Empty> = MockQuerier::new(&[]);
            let deps = DepsMut { storage: &mut *storage, api: &api as &dyn Api, querier: QuerierWrapper::new(&querier) };
            // A contract panic aborts the packet on a chain; here it must not kill the harness.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mesh_external_staking::ibc::ibc_packet_receive(deps, env, msg)
            }))
        };
        let restore = |w: &mut World| {
            let mut st = w.provider.contract_storage_mut(&ext);
            let keys: Vec<Vec<u8>> = st.range_keys(None, None, Order::Ascending).collect();
            for k in keys {
                st.remove(&k);
            }
            for (k, v) in &saved {
                st.set(k, v);
            }
        };
        let recv = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                restore(self);
                bail!("ibc_packet_receive: {e}")
            }
            Err(panic) => {
                restore(self);
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                bail!("ibc_packet_receive panicked: {text}")
            }
        };
        let mut events = vec![];
        let mut burns = vec![];
        for sub in recv.messages.iter() {
            let cmsg: CosmosMsg<Empty> = sub.msg.clone();
            match self.provider.execute(ext.clone(), cmsg) {
                Ok(r) => {
                    events.push(self.to_names(&events_json(&r)));
                    match self.relay_burns(&r) {
                        Ok(b) => burns.extend(b),
                        Err(e) => bail!("relaying burn: {e:#}"),
                    }
                }
                Err(e) => {
                    restore(self);
                    bail!("{e:#}");
                }
            }
        }
        // `consumer_slash`: what the consumer chain's own slashing does to the virtual
        // delegation (outside the contracts), emulated as a burn of the slashed stake
        if op.get("consumer_slash").and_then(Value::as_bool).unwrap_or(false) {
            let mut after = Uint128::zero();
            for user in self.users.clone() {
                after += Uint128::new(self.stake_high(&user, &validator)?);
            }
            let cut = before_total.saturating_sub(after);
            if !cut.is_zero() {
                let msg = json!({"test_burn": {"validators": [validator.clone()], "burn": coin(cut.u128(), &self.denom)}});
                let r = self.exec_consumer(&msg)?;
                burns.push(json!({"consumer_slash": {"validator": validator, "amount": cut.to_string()}, "events": events_json(&r)}));
            }
        }
        let ack: Value = recv.acknowledgement.as_ref().map(|a| serde_json::from_slice(a.as_slice()).unwrap_or(Value::Null)).unwrap_or(Value::Null);
        Ok(json!({"slash_amount": slash_amount.to_string(), "ack": ack, "events": events, "burns": burns,
                  "attributes": recv.attributes.iter().map(|a| json!({"key": a.key, "value": a.value})).collect::<Vec<_>>()}))
    }

    fn snapshot(&self, op: &Value) -> Result<Value> {
        let users: Vec<String> = match op.get("users").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            None => self.users.clone(),
        };
        let validators: Vec<String> = op
            .get("validators")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let mut per_user = Map::new();
        for user in &users {
            let q = |c: &str, m: Value| self.query(c, &m).unwrap_or_else(|e| json!({"error": e.to_string()}));
            per_user.insert(
                user.clone(),
                json!({
                    "account": q("vault", json!({"account_details": {"account": user}})),
                    "claims": q("vault", json!({"account_claims": {"account": user}})),
                    "stakes": q("external_staking", json!({"stakes": {"user": user}})),
                }),
            );
        }
        let mut per_val = Map::new();
        for v in &validators {
            let st = self.query("virtual_staking", &json!({"get_stake": {"validator": v}}))?;
            per_val.insert(v.clone(), st["stake"].clone());
        }
        Ok(json!({"users": per_user, "virtual_stake": per_val}))
    }

    fn run(&mut self, op: &Value) -> Result<Value> {
        let name = s(op, "op")?;
        match name.as_str() {
            "bond" => {
                let user = self.user(&s(op, "user")?);
                let amount = u(op, "amount")?;
                self.provider
                    .sudo(SudoMsg::Bank(BankSudo::Mint { to_address: user.to_string(), amount: vec![coin(amount, &self.denom)] }))
                    .map_err(|e| anyhow!("{e:#}"))?;
                let vault = self.vault.clone();
                let r = self.exec_provider(&user, &vault, &json!({"bond": {}}), &[coin(amount, &self.denom)])?;
                Ok(self.with_events(&r, json!({})))
            }
            "mint" => {
                let user = self.user(&s(op, "user")?);
                self.provider
                    .sudo(SudoMsg::Bank(BankSudo::Mint { to_address: user.to_string(), amount: vec![coin(u(op, "amount")?, &self.denom)] }))
                    .map_err(|e| anyhow!("{e:#}"))?;
                Ok(json!({}))
            }
            "burn" => {
                let user = self.user(&s(op, "user")?);
                let msg: CosmosMsg<Empty> = BankMsg::Burn { amount: vec![coin(u(op, "amount")?, &self.denom)] }.into();
                let r = self.provider.execute(user, msg).map_err(|e| anyhow!("{e:#}"))?;
                Ok(self.with_events(&r, json!({})))
            }
            "balance" => {
                let user = self.user(&s(op, "user")?);
                let b = self.provider.wrap().query_balance(user, &self.denom).map_err(|e| anyhow!("{e:#}"))?;
                Ok(json!({"amount": b.amount.to_string()}))
            }
            "unbond" => {
                let user = self.user(&s(op, "user")?);
                let vault = self.vault.clone();
                let msg = json!({"unbond": {"amount": coin(u(op, "amount")?, &self.denom)}});
                let r = self.exec_provider(&user, &vault, &msg, &[])?;
                Ok(self.with_events(&r, json!({})))
            }
            "stake_remote" => {
                let user_name = s(op, "user")?;
                let user = self.user(&user_name);
                let validator = s(op, "validator")?;
                let amount = u(op, "amount")?;
                let inner = to_json_binary(&json!({"validator": validator}))?;
                let msg = json!({"stake_remote": {"contract": self.ext.to_string(), "amount": coin(amount, &self.denom), "msg": inner}});
                let vault = self.vault.clone();
                let r = self.exec_provider(&user, &vault, &msg, &[])?;
                let mut out = self.with_events(&r, json!({}));
                if op.get("commit").and_then(Value::as_bool).unwrap_or(true) {
                    let tx = self.last_ext_tx_of(Some("in_flight_remote_staking"))?;
                    let ext = self.ext.clone();
                    let relayer = self.api.addr_make(RELAYER);
                    let c = self.exec_provider(&relayer, &ext, &json!({"test_commit_stake": {"tx_id": tx}}), &[])?;
                    let p = self.exec_consumer(&json!({"test_stake": {"delegator": user.to_string(), "validator": validator, "stake": coin(amount, &self.denom)}}))?;
                    out["commit"] = self.to_names(&events_json(&c));
                    out["packet"] = self.to_names(&events_json(&p));
                    out["tx_id"] = json!(tx);
                }
                Ok(out)
            }
            "unstake" => {
                let user = self.user(&s(op, "user")?);
                let validator = s(op, "validator")?;
                let amount = u(op, "amount")?;
                let ext = self.ext.clone();
                let r = self.exec_provider(&user, &ext, &json!({"unstake": {"validator": validator, "amount": coin(amount, &self.denom)}}), &[])?;
                let mut out = self.with_events(&r, json!({}));
                if op.get("commit").and_then(Value::as_bool).unwrap_or(true) {
                    let tx = self.last_ext_tx_of(Some("in_flight_remote_unstaking"))?;
                    let relayer = self.api.addr_make(RELAYER);
                    let c = self.exec_provider(&relayer, &ext, &json!({"test_commit_unstake": {"tx_id": tx}}), &[])?;
                    let p = self.exec_consumer(&json!({"test_unstake": {"delegator": user.to_string(), "validator": validator, "unstake": coin(amount, &self.denom)}}))?;
                    out["commit"] = self.to_names(&events_json(&c));
                    out["packet"] = self.to_names(&events_json(&p));
                    out["tx_id"] = json!(tx);
                }
                Ok(out)
            }
            "withdraw_unbonded" => {
                let user = self.user(&s(op, "user")?);
                let ext = self.ext.clone();
                let r = self.exec_provider(&user, &ext, &json!({"withdraw_unbonded": {}}), &[])?;
                Ok(self.with_events(&r, json!({})))
            }
            "advance" => {
                let secs = u(op, "seconds").unwrap_or(0) as u64;
                let blocks = u(op, "blocks").unwrap_or(1) as u64;
                for app in [&mut self.provider as &mut dyn BlockSet, &mut self.consumer as &mut dyn BlockSet] {
                    app.advance(blocks, secs);
                }
                let b = self.provider.block_info();
                Ok(json!({"height": b.height, "time": b.time.seconds()}))
            }
            "activate" => {
                let r = self.activate(&s(op, "validator")?)?;
                Ok(self.with_events(&r, json!({})))
            }
            "tombstone" | "remove_validator" => {
                let b = self.provider.block_info();
                let key = if name == "tombstone" { "test_tombstone_validator" } else { "test_remove_validator" };
                let msg = json!({key: {"valoper": s(op, "validator")?, "height": b.height, "time": b.time.seconds()}});
                let ext = self.ext.clone();
                let relayer = self.api.addr_make(RELAYER);
                let r = self.exec_provider(&relayer, &ext, &msg, &[])?;
                Ok(self.with_events(&r, json!({})))
            }
            "slash" => self.slash(op),
            "epoch" => {
                let r = self.epoch()?;
                Ok(self.with_events(&r, json!({})))
            }
            "commit_stake" | "rollback_stake" | "commit_unstake" | "rollback_unstake" => {
                let tx = match u(op, "tx_id") { Ok(t) => t as u64, Err(_) => self.last_ext_tx()? };
                let ext = self.ext.clone();
                let relayer = self.api.addr_make(RELAYER);
                // the tx, read before the ack, for the provider packet a commit sends the consumer
                let pending: Option<Value> = self.provider.wrap().query_wasm_smart(ext.clone(), &json!({"pending_tx": {"tx_id": tx}})).ok();
                let r = self.exec_provider(&relayer, &ext, &json!({format!("test_{name}"): {"tx_id": tx}}), &[])?;
                let mut out = self.with_events(&r, json!({"tx_id": tx}));
                let inner = pending.as_ref().and_then(|p| p.as_object()).and_then(|o| o.values().next()).cloned();
                if let (Some(inner), true) = (inner, name.starts_with("commit")) {
                    let user = inner["user"].as_str().unwrap_or_default().to_owned();
                    let validator = inner["validator"].as_str().unwrap_or_default().to_owned();
                    let amount: u128 = inner["amount"].as_str().unwrap_or("0").parse().unwrap_or(0);
                    let key = if name == "commit_stake" { ("test_stake", "stake") } else { ("test_unstake", "unstake") };
                    let p = self.exec_consumer(&json!({key.0: {"delegator": user, "validator": validator, key.1: coin(amount, &self.denom)}}))?;
                    out["packet"] = self.to_names(&events_json(&p));
                }
                Ok(out)
            }
            "exec" => {
                let sender = self.user(&s(op, "sender")?);
                let (provider, addr) = self.contract(&s(op, "contract")?)?;
                let msg = self.to_addrs(op.get("msg").ok_or_else(|| anyhow!("missing msg"))?);
                let funds: Vec<cosmwasm_std::Coin> = serde_json::from_value(op.get("funds").cloned().unwrap_or(json!([])))?;
                let r = if provider {
                    self.exec_provider(&sender, &addr, &msg, &funds)?
                } else {
                    self.consumer.execute_contract(sender, addr, &msg, &funds).map_err(|e| anyhow!("{e:#}"))?
                };
                Ok(self.with_events(&r, json!({"data": r.data.as_ref().map(Binary::to_base64)})))
            }
            "query" => self.query(&s(op, "contract")?, op.get("msg").ok_or_else(|| anyhow!("missing msg"))?),
            "snapshot" => self.snapshot(op),
            "block" => {
                let b = self.provider.block_info();
                Ok(json!({"height": b.height, "time": b.time.seconds()}))
            }
            other => bail!("unknown op `{other}`"),
        }
    }
}

/// Both apps move their clocks together.
trait BlockSet {
    fn set(&mut self, height: u64, time: u64);
    fn advance(&mut self, blocks: u64, secs: u64);
}

macro_rules! block_set {
    ($t:ty) => {
        impl BlockSet for $t {
            fn set(&mut self, height: u64, time: u64) {
                self.update_block(|b| {
                    b.height = height;
                    b.time = Timestamp::from_seconds(time);
                });
            }
            fn advance(&mut self, blocks: u64, secs: u64) {
                self.update_block(|b| {
                    b.height += blocks;
                    b.time = b.time.plus_seconds(secs);
                });
            }
        }
    };
}
block_set!(App);
block_set!(ConsumerApp);

fn main() -> Result<()> {
    // Panics are reported as op errors; keep stderr to one line each.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut world: Option<World> = None;
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Err(e) => json!({"ok": false, "error": format!("bad json: {e}")}),
            Ok(op) => {
                let res = if op.get("op").and_then(Value::as_str) == Some("reset") {
                    World::new(&op).map(|w| {
                        let names: Value = json!(w.names);
                        world = Some(w);
                        json!({"contracts": names})
                    })
                } else {
                    match world.as_mut() {
                        None => Err(anyhow!("send a `reset` op first")),
                        // A contract panic fails the op like a failed tx: cw-multi-test runs every
                        // execute in a storage transaction that is only committed on success.
                        Some(w) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run(&op))) {
                            Ok(r) => r,
                            Err(panic) => {
                                let text = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_default();
                                Err(anyhow!("contract panicked: {text}"))
                            }
                        },
                    }
                };
                match res {
                    Ok(v) => json!({"ok": true, "result": v}),
                    Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
                }
            }
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
