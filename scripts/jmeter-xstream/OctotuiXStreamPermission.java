/*
 * Lets Debian's JMeter 2.13 read plans again with XStream >= 1.4.18.
 *
 * XStream 1.4.18 and later deny every type unless permissions are configured, and JMeter 2.13
 * never configures them, so loading any plan fails with ForbiddenClassException. JMeter 2.13's
 * SaveService builds CLASS(Mapper) for each line "_CLASS=collection" of saveservice.properties,
 * for both of its XStream instances, while it starts and before any plan is read. This class uses
 * that hook: its constructor grants AnyTypePermission.ANY on the SecurityMapper of the chain, as
 * JMeter 5.x does in its own SaveService. It is registered as a converter, so it implements
 * Converter and converts nothing.
 */
package org.octotui.jmeter;

import com.thoughtworks.xstream.converters.Converter;
import com.thoughtworks.xstream.converters.MarshallingContext;
import com.thoughtworks.xstream.converters.UnmarshallingContext;
import com.thoughtworks.xstream.io.HierarchicalStreamReader;
import com.thoughtworks.xstream.io.HierarchicalStreamWriter;
import com.thoughtworks.xstream.mapper.Mapper;
import com.thoughtworks.xstream.mapper.SecurityMapper;
import com.thoughtworks.xstream.security.AnyTypePermission;

public final class OctotuiXStreamPermission implements Converter {

    public OctotuiXStreamPermission(Mapper mapper) {
        SecurityMapper security = (SecurityMapper) mapper.lookupMapperOfType(SecurityMapper.class);
        if (security == null) {
            // XStream older than 1.4.7 has no SecurityMapper: it allows every type already.
            return;
        }
        security.addPermission(AnyTypePermission.ANY);
    }

    @Override
    @SuppressWarnings("rawtypes")
    public boolean canConvert(Class type) {
        return false;
    }

    @Override
    public void marshal(Object source, HierarchicalStreamWriter writer, MarshallingContext context) {
        throw new UnsupportedOperationException("converts nothing");
    }

    @Override
    public Object unmarshal(HierarchicalStreamReader reader, UnmarshallingContext context) {
        throw new UnsupportedOperationException("converts nothing");
    }
}
