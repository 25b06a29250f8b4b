package dev.headwater.mongo;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Arrays;

import org.h2.mvstore.DataUtils;
import org.h2.mvstore.WriteBuffer;
import org.h2.mvstore.type.BasicDataType;
import org.h2.mvstore.type.ObjectDataType;

import de.bwaldvogel.mongo.backend.Missing;
import de.bwaldvogel.mongo.backend.ValueComparator;
import de.bwaldvogel.mongo.bson.MaxKey;
import de.bwaldvogel.mongo.bson.MinKey;
import de.bwaldvogel.mongo.bson.ObjectId;

/**
 * The key of a secondary-index entry: the indexed values in index order, then the document's
 * position (its {@code _id}). Ordered by MongoDB's BSON comparison order ({@link ValueComparator})
 * per component, each component ascending or descending as the index declares, so a range of
 * index values is a contiguous range of keys. Missing and null compare equal (as in MongoDB, an
 * index stores a missing field as null). Common BSON types are written compactly; anything else
 * falls back to H2's Java serialisation.
 */
final class IndexKeyType extends BasicDataType<Object[]> {

    private static final byte NULL = 0;
    private static final byte INT = 1;
    private static final byte LONG = 2;
    private static final byte DOUBLE = 3;
    private static final byte STRING = 4;
    private static final byte INSTANT = 5;
    private static final byte TRUE = 6;
    private static final byte FALSE = 7;
    private static final byte OBJECT_ID = 8;
    private static final byte MIN_KEY = 9;
    private static final byte MAX_KEY = 10;
    private static final byte SERIALIZED = 11;

    private static final ValueComparator ORDER = ValueComparator.asc();

    /** +1 / -1 per indexed field; the trailing position component is always ascending. */
    private final int[] directions;

    IndexKeyType(int[] directions) {
        this.directions = directions.clone();
    }

    @Override
    public int compare(Object[] a, Object[] b) {
        int n = Math.min(a.length, b.length);
        for (int i = 0; i < n; i++) {
            int cmp = compareValues(a[i], b[i]);
            if (cmp != 0) {
                return i < directions.length ? cmp * directions[i] : cmp;
            }
        }
        return Integer.compare(a.length, b.length);
    }

    static int compareValues(Object x, Object y) {
        // MinKey/MaxKey are bounds of a scan; they compare outside every stored value, nulls too.
        if (x instanceof MinKey || y instanceof MaxKey) {
            return (x instanceof MinKey && y instanceof MinKey) || (x instanceof MaxKey && y instanceof MaxKey) ? 0 : -1;
        }
        if (x instanceof MaxKey || y instanceof MinKey) {
            return 1;
        }
        // Fast paths for what indexes mostly hold (same-type strings, dates, numbers); the same
        // order as ValueComparator, which handles everything else (mixed types, null, documents).
        if (x != null && y != null && x.getClass() == y.getClass()) {
            if (x instanceof String a) {
                return Integer.signum(a.compareTo((String) y));
            } else if (x instanceof Instant a) {
                return Integer.signum(a.compareTo((Instant) y));
            } else if (x instanceof Integer a) {
                return Integer.compare(a, (Integer) y);
            } else if (x instanceof Long a) {
                return Long.compare(a, (Long) y);
            }
        }
        return ORDER.compare(x, y);
    }

    @Override
    public int getMemory(Object[] key) {
        int size = 24 + 8 * key.length;
        for (Object value : key) {
            size += value instanceof String s ? 40 + 2 * s.length() : 24;
        }
        return size;
    }

    @Override
    public Object[][] createStorage(int size) {
        return new Object[size][];
    }

    @Override
    public void write(WriteBuffer buff, Object[] key) {
        buff.putVarInt(key.length);
        for (Object value : key) {
            writeValue(buff, value);
        }
    }

    @Override
    public Object[] read(ByteBuffer buff) {
        int n = DataUtils.readVarInt(buff);
        Object[] key = new Object[n];
        for (int i = 0; i < n; i++) {
            key[i] = readValue(buff);
        }
        return key;
    }

    private static void writeValue(WriteBuffer buff, Object value) {
        if (value == null || value instanceof Missing) {
            buff.put(NULL);
        } else if (value instanceof Integer i) {
            buff.put(INT).putInt(i);
        } else if (value instanceof Long l) {
            buff.put(LONG).putLong(l);
        } else if (value instanceof Double d) {
            buff.put(DOUBLE).putDouble(d);
        } else if (value instanceof String s) {
            byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
            buff.put(STRING).putVarInt(bytes.length).put(bytes);
        } else if (value instanceof Instant t) {
            buff.put(INSTANT).putLong(t.getEpochSecond()).putInt(t.getNano());
        } else if (value instanceof Boolean b) {
            buff.put(b ? TRUE : FALSE);
        } else if (value instanceof ObjectId oid) {
            buff.put(OBJECT_ID).put(oid.toByteArray());
        } else if (value instanceof MinKey) {
            buff.put(MIN_KEY);
        } else if (value instanceof MaxKey) {
            buff.put(MAX_KEY);
        } else {
            byte[] bytes = ObjectDataType.serialize(value);
            buff.put(SERIALIZED).putVarInt(bytes.length).put(bytes);
        }
    }

    private static Object readValue(ByteBuffer buff) {
        byte tag = buff.get();
        switch (tag) {
            case NULL:
                return null;
            case INT:
                return buff.getInt();
            case LONG:
                return buff.getLong();
            case DOUBLE:
                return buff.getDouble();
            case STRING: {
                byte[] bytes = new byte[DataUtils.readVarInt(buff)];
                buff.get(bytes);
                return new String(bytes, StandardCharsets.UTF_8);
            }
            case INSTANT: {
                long seconds = buff.getLong();
                return Instant.ofEpochSecond(seconds, buff.getInt());
            }
            case TRUE:
                return Boolean.TRUE;
            case FALSE:
                return Boolean.FALSE;
            case OBJECT_ID: {
                byte[] bytes = new byte[12];
                buff.get(bytes);
                return new ObjectId(bytes);
            }
            case MIN_KEY:
                return MinKey.getInstance();
            case MAX_KEY:
                return MaxKey.getInstance();
            case SERIALIZED: {
                byte[] bytes = new byte[DataUtils.readVarInt(buff)];
                buff.get(bytes);
                return ObjectDataType.deserialize(bytes);
            }
            default:
                throw new IllegalStateException("corrupt index key: unknown type tag " + tag);
        }
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof IndexKeyType o && Arrays.equals(directions, o.directions);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(directions);
    }
}
