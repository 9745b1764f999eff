process.env.RELAY_TEST_ENGINE = 'production';
