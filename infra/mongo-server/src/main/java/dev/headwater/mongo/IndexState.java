package dev.headwater.mongo;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;

/** Per-index build state and multikey flag, kept in one map of the store. */
final class IndexState {

    static final String READY = "ready";
    static final String BUILDING = "building";
    private static final String MAP_NAME = "headwater.index-state";

    private IndexState() {
    }

    static MVMap<String, Object> map(MVStore store) {
        return store.openMap(MAP_NAME);
    }

    static String multikeyKey(String mapName) {
        return "multikey:" + mapName;
    }
}
