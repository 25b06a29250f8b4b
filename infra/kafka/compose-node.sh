#!/usr/bin/env bash
# One Kafka node of docker-compose.yaml, configured as infra/kafka_cluster.py configures the local
# stack's: SASL/SCRAM-SHA-512 on the broker listeners, SASL/PLAIN broker-to-controller,
# StandardAuthorizer, the broker and admin principals as super users. Runs in the apache/kafka
# image (only $KAFKA_HOME/bin is used); every value comes from the container's environment.
set -euo pipefail
KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
: "${NODE_ID:?}" "${NODE_ROLE:?}" "${NODE_LISTENERS:?}" "${CLUSTER_ID:?}"
broker_user=${KAFKA_BROKER_USER:-headwater-broker}
broker_password=${KAFKA_BROKER_PASSWORD:-broker-dev-secret}
admin_user=${KAFKA_ADMIN_USER:-headwater-admin}
conf=${NODE_CONFIG:-/tmp/server.properties}
{
  echo "process.roles=${NODE_ROLE}"
  echo "node.id=${NODE_ID}"
  echo "controller.quorum.voters=1@kafka-controller:9093"
  echo "controller.listener.names=CONTROLLER"
  echo "listeners=${NODE_LISTENERS}"
  echo "log.dirs=${NODE_LOG_DIR:-/var/lib/kafka/data}"
  echo "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT"
  echo "sasl.mechanism.controller.protocol=PLAIN"
  echo "listener.name.controller.sasl.enabled.mechanisms=PLAIN"
  echo "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${broker_user}\" password=\"${broker_password}\" user_${broker_user}=\"${broker_password}\";"
  echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
  echo "super.users=User:${broker_user};User:${admin_user}"
  echo "allow.everyone.if.no.acl.found=false"
  if [ "$NODE_ROLE" = broker ]; then
    echo "advertised.listeners=${NODE_ADVERTISED:?}"
    echo "inter.broker.listener.name=INTERNAL"
    echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
    for listener in internal external; do
      echo "listener.name.${listener}.sasl.enabled.mechanisms=SCRAM-SHA-512"
      echo "listener.name.${listener}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${broker_user}\" password=\"${broker_password}\";"
    done
    echo "auto.create.topics.enable=false"
    echo "num.partitions=${KAFKA_PARTITIONS:-3}"
    echo "default.replication.factor=${KAFKA_REPLICATION_FACTOR:-2}"
    echo "min.insync.replicas=${KAFKA_MIN_INSYNC_REPLICAS:-1}"
    echo "unclean.leader.election.enable=false"
    echo "offsets.topic.replication.factor=2"
    echo "transaction.state.log.replication.factor=2"
    echo "transaction.state.log.min.isr=1"
    echo "share.coordinator.state.topic.replication.factor=2"
    echo "share.coordinator.state.topic.min.isr=1"
    echo "group.initial.rebalance.delay.ms=0"
  fi
} > "$conf"
chmod 600 "$conf"
# The first SCRAM credentials are written into the metadata log when it is formatted (the
# controller's is the one that counts); `python -m producer reload` (the setup service) sets
# the client roles' again from the environment on every start.
scram=()
for role in BROKER ADMIN PRODUCER CONSUMER HEALTH; do
  lower=${role,,}
  user_var=KAFKA_${role}_USER password_var=KAFKA_${role}_PASSWORD
  user=${!user_var:-headwater-${lower}}
  password=${!password_var:-${lower}-dev-secret}
  scram+=(--add-scram "SCRAM-SHA-512=[name=${user},iterations=8192,password=${password}]")
done
"$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$conf" "${scram[@]}" > /dev/null
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$conf"
