using Poold.Routing;

namespace Poold.Tests.Routing;

public class DatabaseDdlTests
{
    [TestCase("DROP DATABASE shop", "shop")]
    [TestCase("drop database if exists Shop", "shop")]
    [TestCase("DROP DATABASE \"Shop\" WITH (FORCE)", "Shop")]
    [TestCase("/* c */ DROP -- x\n DATABASE shop;", "shop")]
    [TestCase("ALTER DATABASE shop RENAME TO store", "shop")]
    [TestCase("CREATE DATABASE copy TEMPLATE shop", "shop")]
    [TestCase("CREATE DATABASE copy WITH OWNER = me TEMPLATE = \"Shop\" ENCODING 'UTF8'", "Shop")]
    public void DatabasesToFree_DatabaseDdl_NamesTheDatabase(string sql, string database) =>
        Assert.That(DatabaseDdl.DatabasesToFree(sql), Is.EqualTo(new[] { database }));

    [TestCase("CREATE DATABASE copy")]
    [TestCase("CREATE DATABASE copy TEMPLATE DEFAULT")]
    [TestCase("ALTER DATABASE shop SET work_mem = '1MB'")]
    [TestCase("DROP TABLE database")]
    [TestCase("SELECT 'DROP DATABASE shop'")]
    [TestCase("DROP DATABASE")]
    [TestCase("")]
    public void DatabasesToFree_OtherStatements_NameNone(string sql) => Assert.That(DatabaseDdl.DatabasesToFree(sql), Is.Empty);
}
